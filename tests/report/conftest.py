"""Fixtures of the report tests: small real studies in one session-wide pair of stores.

Each study is run once per session through ``run_study`` (MLflow SQLite stores take
seconds to create), then its report is built once; tests read those results. The joint
study also receives, after it ran, the trials a real study accumulates over time: one
that diverged, one killed by Ctrl-C, one whose worker died, one still running, one pruned
and a duplicate MLflow run of a finished trial, each with tempting partial metrics.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from . import helpers


@pytest.fixture(scope="session", autouse=True)
def _quiet_artifact_downloads():
    """MLflow draws a progress bar per artifact download; the CLI turns it off too."""
    previous = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    yield
    if previous is None:
        os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
    else:
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous


@pytest.fixture(scope="session")
def stores(tmp_path_factory) -> SimpleNamespace:
    """One Optuna and one MLflow SQLite store for every study of the session."""
    directory = tmp_path_factory.mktemp("stores")
    return SimpleNamespace(
        directory=directory,
        storage_url=f"sqlite:///{directory / 'optuna.db'}",
        tracking_uri=f"sqlite:///{directory / 'mlflow.db'}",
    )


@pytest.fixture(scope="session")
def joint_study(stores, tmp_path_factory) -> SimpleNamespace:
    """A 20-trial joint iris study (none, l2, weight_decay) plus the injected trials."""
    spec_dir = tmp_path_factory.mktemp("specs")
    spec, path = helpers.run_tiny_study(spec_dir, stores, helpers.JOINT)
    injected = helpers.inject_awkward_trials(spec, stores)
    return SimpleNamespace(spec=spec, spec_path=path, injected=injected, **vars(stores))


@pytest.fixture(scope="session")
def joint_report(joint_study, tmp_path_factory) -> SimpleNamespace:
    """The joint study's first report, with the MLflow calls it made counted."""
    out = tmp_path_factory.mktemp("report-joint")
    result, calls = helpers.build_counted(joint_study, out)
    return SimpleNamespace(result=result, calls=calls, out=Path(out))


@pytest.fixture(scope="session")
def regression_study(stores, tmp_path_factory) -> SimpleNamespace:
    """A per_kind diabetes (regression) study with three arms of three trials."""
    spec_dir = tmp_path_factory.mktemp("specs-regression")
    spec, path = helpers.run_tiny_study(spec_dir, stores, helpers.PER_KIND_REGRESSION)
    return SimpleNamespace(spec=spec, spec_path=path, **vars(stores))


@pytest.fixture(scope="session")
def regression_report(regression_study, tmp_path_factory) -> SimpleNamespace:
    out = tmp_path_factory.mktemp("report-regression")
    result, calls = helpers.build_counted(regression_study, out)
    return SimpleNamespace(result=result, calls=calls, out=Path(out))
