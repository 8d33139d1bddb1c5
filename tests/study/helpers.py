"""Helpers for the study-system tests: tiny specs written as TOML, the ``python -m core``
command line as a subprocess, and readers of the Optuna and MLflow stores."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

REPO = Path(__file__).resolve().parents[2]

# The smallest useful study: iris, one hidden layer of 8 units, a few epochs, no pruning,
# heartbeats short enough that a killed worker's trial is failed within seconds.
TINY: dict[str, dict[str, Any]] = {
    "study": {
        "name": "tiny",
        "n_trials": 3,
        "seed": 0,
        "sampler": "tpe",
        "pruner": "none",
        "heartbeat_interval": 1,
        "grace_period": 2,
    },
    "data": {"dataset": "iris"},
    "model": {"hidden": [8]},
    "train": {"max_epochs": 3, "batch_size": 32},
    "search": {"regularizers": ["none", "l2"]},
}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float) and value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def toml_text(sections: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


def spec_sections(name: str, **overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """TINY with ``name`` and per-section overrides; a value of None removes the key."""
    sections = {section: dict(values) for section, values in TINY.items()}
    sections["study"]["name"] = name
    for section, values in overrides.items():
        target = sections.setdefault(section, {})
        for key, value in values.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
    return sections


def write_spec(directory: Path, name: str, **overrides: dict[str, Any]) -> Path:
    """Write a tiny spec named ``name`` (TOML text) into ``directory``; return its path."""
    path = directory / f"{name}.toml"
    path.write_text(toml_text(spec_sections(name, **overrides)), encoding="utf-8")
    return path


def load(directory: Path, name: str, **overrides: dict[str, Any]):
    from core.study.spec import load_spec

    return load_spec(write_spec(directory, name, **overrides))


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "core", *args]


def run_cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """``python -m core ARGS`` from the repository root, output captured."""
    return subprocess.run(
        cli_command(*args),
        cwd=REPO,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, **env: str) -> subprocess.Popen:
    """Start ``python -m core ARGS`` in a process group of its own (killed by its id)."""
    return subprocess.Popen(
        cli_command(*args),
        cwd=REPO,
        env=cli_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop_process(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group this test started, then reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s")


def study_exists(db_path: Path, study_name: str) -> bool:
    """Whether another process has created ``study_name`` in the SQLite file (read-only)."""
    if not db_path.exists():
        return False
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        ) as connection:
            row = connection.execute(
                "SELECT 1 FROM studies WHERE study_name = ?", (study_name,)
            ).fetchone()
    except sqlite3.Error:  # no schema yet
        return False
    return row is not None


def reader_storage(db_path: Path, study_name: str) -> optuna.storages.RDBStorage | None:
    """An Optuna storage over a database another process created, opened only once its
    study exists: opening it earlier would race the worker's schema creation (RDBStorage
    writes version rows when it opens an empty file)."""
    if not study_exists(db_path, study_name):
        return None
    return optuna.storages.RDBStorage(
        f"sqlite:///{db_path}",
        skip_table_creation=True,
        engine_kwargs={"connect_args": {"timeout": 30}},
    )


def trials_of(storage: optuna.storages.RDBStorage, study_name: str):
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return []
    except Exception:  # schema still being created by the worker
        return []
    return study.get_trials(deepcopy=False)


def _runs(tracking_uri: str, study_name: str, role: str, experiment: str | None) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment or study_name)
    if found is None:
        return []
    return client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.role = '{role}' and tags.study = '{study_name}'",
        max_results=1000,
    )


def child_runs(tracking_uri: str, study_name: str, experiment: str | None = None) -> list:
    """Every trial run of ``study_name`` in the experiment named after the spec."""
    return _runs(tracking_uri, study_name, "trial", experiment)


def parent_runs(tracking_uri: str, study_name: str, experiment: str | None = None) -> list:
    """The parent run(s) of ``study_name``."""
    return _runs(tracking_uri, study_name, "study", experiment)


class CountingStorage(optuna.storages.InMemoryStorage):
    """Counts the reads of every trial of the study (what a database pays per query)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get_all_trials(self, *args, **kwargs):
        self.reads += 1
        return super().get_all_trials(*args, **kwargs)
