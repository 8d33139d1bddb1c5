"""A finished study read back through a real MLflow server's REST API, the way the UI and
other clients see it: the parent run, one child per trial, complete metric histories."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from optuna.trial import TrialState

from core.study.runner import run_study
from core.testing import NO_PROXY, mlflow_server

from .helpers import load

# No proxy, whatever the environment says: requests go to our own 127.0.0.1 server only.
OPENER = NO_PROXY
EPOCHS = 4
N_TRIALS = 3


def get(base: str, path: str, **query) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(query)}" if query else f"{base}{path}"
    with OPENER.open(url, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body.strip().startswith(b"{") else {"text": body.decode()}


def post(base: str, path: str, payload: dict) -> dict:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with OPENER.open(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def served_study(tmp_path_factory):
    """A finished 3-trial study and an MLflow server over its store, killed afterwards."""
    directory = tmp_path_factory.mktemp("served")
    tracking_uri = f"sqlite:///{directory / 'mlflow.db'}"
    spec = load(directory, "served", study={"n_trials": N_TRIALS}, train={"max_epochs": EPOCHS})
    (study,) = run_study(
        spec, storage_url=f"sqlite:///{directory / 'optuna.db'}", tracking_uri=tracking_uri
    )
    with mlflow_server(tracking_uri, directory, artifacts="direct", timeout=60) as base:
        yield base, study


def test_server_lists_the_parent_and_one_child_per_trial_with_full_histories(served_study):
    base, study = served_study
    experiment = get(base, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="served")
    experiment_id = experiment["experiment"]["experiment_id"]
    runs = post(
        base,
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [experiment_id], "max_results": 100},
    )["runs"]

    def tags(run):
        return {t["key"]: t["value"] for t in run["data"].get("tags", [])}

    parents = [r for r in runs if tags(r).get("role") == "study"]
    children = [r for r in runs if tags(r).get("role") == "trial"]
    assert len(parents) == 1
    parent_id = parents[0]["info"]["run_id"]
    assert parents[0]["info"]["status"] == "FINISHED"
    assert len(children) == N_TRIALS

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert all(t.state == TrialState.COMPLETE for t in trials.values())
    numbers = sorted(int(tags(r)["trial_number"]) for r in children)
    assert numbers == sorted(trials)
    for run in children:
        run_tags = tags(run)
        trial = trials[int(run_tags["trial_number"])]
        assert run_tags["mlflow.parentRunId"] == parent_id
        assert run["info"]["status"] == "FINISHED"
        assert run["info"]["run_id"] == trial.user_attrs["mlflow_run_id"]
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        epochs_run = int(metrics["epochs_run"])
        assert 1 <= epochs_run <= EPOCHS
        history = get(
            base,
            "/api/2.0/mlflow/metrics/get-history",
            run_id=run["info"]["run_id"],
            metric_key="val_loss",
        )["metrics"]
        assert sorted(int(m.get("step", 0)) for m in history) == list(range(epochs_run))
        assert {int(m.get("step", 0)): m["value"] for m in history} == trial.intermediate_values
