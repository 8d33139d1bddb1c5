"""Errors and defaults of the study layer that the command line needs before it imports
Optuna or MLflow (so that rejecting a bad flag or spec stays quick)."""

from __future__ import annotations

DEFAULT_STORAGE = "sqlite:///runs/optuna.db"
DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"


class StorageError(ValueError):
    """A storage URL that cannot be used; one line naming the value and what is allowed."""


class TooManyFailures(RuntimeError):
    """More trials failed in this process than the budget allows; the study is unhealthy."""
