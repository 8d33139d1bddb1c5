"""Helpers of the report tests: tiny specs, awkward trials, a counting MLflow client."""

from __future__ import annotations

import copy
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from optuna.trial import TrialState

import core.report.collect as collect_module
from core.report import build_report
from core.study.runner import run_study
from core.study.spec import Spec, load_spec, to_toml

REPO = Path(__file__).resolve().parents[2]

JOINT: dict[str, dict[str, Any]] = {
    "study": {
        "name": "rep-joint",
        "n_trials": 20,
        "seed": 0,
        "sampler": "random",
        "pruner": "none",
    },
    "data": {"dataset": "iris"},
    "model": {"hidden": [8]},
    "train": {"max_epochs": 5, "batch_size": 32},
    "search": {"regularizers": ["none", "l2", "weight_decay"], "learning_rate": [0.003, 0.05]},
    "report": {"seeds": 3},
}

PER_KIND_REGRESSION: dict[str, dict[str, Any]] = {
    "study": {
        "name": "rep-perkind",
        "n_trials": 3,
        "seed": 1,
        "sampler": "random",
        "pruner": "none",
        "mode": "per_kind",
    },
    "data": {"dataset": "diabetes"},
    "model": {"hidden": [8]},
    "train": {"max_epochs": 5, "batch_size": 32},
    "search": {"arms": ["none", "l2", "dropout"], "learning_rate": [0.003, 0.03]},
    "report": {"seeds": 3},
}

# MlflowClient methods that read the store (the rest write).
READS = frozenset(
    {
        "search_runs",
        "get_run",
        "get_experiment",
        "get_experiment_by_name",
        "get_metric_history",
        "download_artifacts",
        "list_artifacts",
        "search_experiments",
    }
)


def write_spec(directory: Path, sections: dict[str, dict[str, Any]], **changes: Any) -> Path:
    """Write ``sections`` (``study_name=...`` renames the study) as TOML; return the path."""
    data = copy.deepcopy(sections)
    if "study_name" in changes:
        data["study"]["name"] = changes.pop("study_name")
    for section, values in changes.items():
        data.setdefault(section, {}).update(values)
    path = directory / f"{data['study']['name']}.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    return path


def run_tiny_study(directory: Path, stores: SimpleNamespace, sections: dict) -> tuple[Spec, Path]:
    """Write the spec, run its study into the session stores; return spec and path."""
    path = write_spec(directory, sections)
    spec = load_spec(path)
    run_study(spec, storage_url=stores.storage_url, tracking_uri=stores.tracking_uri)
    return spec, path


def load_study(spec: Spec, storage_url: str, name: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name or spec.study.name, storage=storage_url)


def _tempting_metrics(client: MlflowClient, run_id: str) -> None:
    """Metrics better than any real trial's, as a partial or bogus run might hold."""
    now = int(time.time() * 1000)
    metrics = [Metric("val_loss", 1e-4 / (step + 1), now, step) for step in range(3)]
    metrics += [
        Metric(key, value, now, 0)
        for key, value in {
            "best_val_loss": 1e-4,
            "best_val_accuracy": 1.0,
            "test_accuracy": 0.0123,
            "test_loss": 1e-4,
            "gap_test": 0.987,
            "best_epoch": 99.0,
            "epochs_run": 100.0,
        }.items()
    ]
    client.log_batch(run_id, metrics=metrics)


def inject_awkward_trials(spec: Spec, stores: SimpleNamespace) -> dict[str, Any]:
    """Add a diverged, a killed, a dead-worker, a running and a pruned trial (each with an
    MLflow run holding tempting metrics) and a duplicate run of the best l2 trial.

    Returns:
        The trial number and run id of each injected item, by name.
    """
    study = load_study(spec, stores.storage_url)
    client = MlflowClient(stores.tracking_uri)
    experiment = client.get_experiment_by_name(spec.study.name).experiment_id
    parent = study.user_attrs["mlflow_parent_run_id"]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    l2 = [t for t in complete if t.user_attrs["regularizer"] == "l2"]
    template = min(l2, key=lambda t: (t.value, t.number))
    injected: dict[str, Any] = {"best_l2_trial": template.number}

    def add(name, state, run_status, run_state, attrs=None, intermediate=None) -> None:
        number = len(study.get_trials(deepcopy=False))
        tags = {
            "mlflow.parentRunId": parent,
            "role": "trial",
            "study": spec.study.name,
            "trial_number": str(number),
            "regularizer": "l2",
            "state": run_state,
        }
        run_id = client.create_run(experiment, tags=tags).info.run_id
        _tempting_metrics(client, run_id)
        if run_status != "RUNNING":
            client.set_terminated(run_id, status=run_status)
        trial = optuna.trial.create_trial(
            state=state,
            params=template.params,
            distributions=template.distributions,
            user_attrs={"regularizer": "l2", "seed": 1, "mlflow_run_id": run_id, **(attrs or {})},
            intermediate_values=intermediate,
        )
        study.add_trial(trial)
        injected[name] = SimpleNamespace(number=number, run_id=run_id)

    add(
        "diverged",
        TrialState.FAIL,
        "FAILED",
        "FAIL",
        {
            "fail_reason": "training loss became non-finite at epoch 2 with learning_rate=0.09; "
            "lower the learning rate or the regularization strength",
            "fail_epoch": 2,
        },
    )
    add("killed", TrialState.FAIL, "KILLED", "FAIL", {"fail_reason": "KeyboardInterrupt: "})
    add("dead", TrialState.FAIL, "RUNNING", "RUNNING")
    add("running", TrialState.RUNNING, "RUNNING", "RUNNING")
    add("pruned", TrialState.PRUNED, "KILLED", "PRUNED", {"pruned_epoch": 1}, {0: 2e-4, 1: 1e-4})

    duplicate = client.create_run(
        experiment,
        tags={
            "mlflow.parentRunId": parent,
            "role": "trial",
            "study": spec.study.name,
            "trial_number": str(template.number),
            "regularizer": "l2",
            "state": "COMPLETE",
        },
    ).info.run_id
    _tempting_metrics(client, duplicate)
    client.set_terminated(duplicate, status="FINISHED")
    injected["duplicate"] = SimpleNamespace(number=template.number, run_id=duplicate)
    return injected


class CountingClient:
    """Wraps an ``MlflowClient`` and counts every public method called on it."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name.startswith("_") or not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attribute(*args, **kwargs)

        return counted


def build_counted(study: SimpleNamespace, out: Path, **kwargs: Any):
    """``build_report`` with its MLflow client counting calls; returns (result, Counter)."""
    clients: list[CountingClient] = []

    def factory(uri: str) -> CountingClient:
        clients.append(CountingClient(MlflowClient(uri)))
        return clients[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(collect_module, "MlflowClient", factory)
        result = build_report(
            study.spec,
            storage_url=study.storage_url,
            tracking_uri=study.tracking_uri,
            out_dir=out,
            **kwargs,
        )
    calls: Counter[str] = Counter()
    for client in clients:
        calls.update(client.calls)
    return result, calls


def holm_by_definition(p: list[float]) -> list[float]:
    """Holm's adjusted p-values as the smallest alpha at which the step-down procedure
    rejects each hypothesis (written independently of ``core.report.stats.holm``)."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    for rank, index in enumerate(order):
        adjusted[index] = min(1.0, max((m - j) * p[order[j]] for j in range(rank + 1)))
    return adjusted


def read_table(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{name}.csv")


def reads(calls: Counter) -> int:
    return sum(n for name, n in calls.items() if name in READS)


def raw_reevaluation_runs(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """Re-evaluation runs straight from MLflow, independently of ``core.report.collect``."""
    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs(
        [experiment_id],
        filter_string="tags.reevaluation = 'true' and attributes.status = 'FINISHED'",
        max_results=1000,
    )
    rows = [
        {
            "run_id": run.info.run_id,
            "parent": run.data.tags.get("mlflow.parentRunId"),
            "kind": run.data.tags["kind"],
            "seed": int(run.data.tags["seed"]),
            **run.data.metrics,
        }
        for run in runs
        if run.data.tags.get("role") != "reevaluation"
    ]
    return pd.DataFrame(rows)
