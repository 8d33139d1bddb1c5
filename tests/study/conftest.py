"""Fixtures of the study-system tests (helpers live in ``helpers.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory) -> str:
    """One MLflow SQLite store per test module (its migrations take a few seconds)."""
    directory = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{directory / 'mlflow.db'}"


@pytest.fixture
def optuna_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"
