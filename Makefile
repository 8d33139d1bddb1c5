# regstudy: every target that needs Python runs `setup` first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SPEC ?= studies/quick.toml
STAMP := $(VENV)/.installed

.PHONY: setup test lint format study report ui dashboard bench clean

setup: $(STAMP)

# Re-run only when pyproject.toml changes (the stamp is older than it).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

study: setup
	$(BIN)/regstudy run $(SPEC)

report: setup
	$(BIN)/regstudy report $(SPEC)

ui: setup
	$(BIN)/regstudy ui

dashboard: setup
	$(BIN)/pip install --quiet -e '.[dashboard]'
	$(BIN)/optuna-dashboard --host 127.0.0.1 sqlite:///runs/optuna.db

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
