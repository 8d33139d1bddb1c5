"""MLflow tracking of studies: one child run per trial under one parent, the trial's
parameters and per-epoch history, terminal statuses for every way a trial ends, threads,
and a bounded number of writes."""

from __future__ import annotations

import math
import os

import mlflow
import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

import core.study.objective as objective_module
import core.study.runner as runner_module
from core.study.objective import Objective, load_splits
from core.study.runner import make_storage, open_study, run_study, study_refs
from core.study.space import suggest
from core.tracking import EPOCH_METRICS, RUN_ATTR, Tracker

from .helpers import child_runs, load, parent_runs, run_cli, write_spec


def runs_by_number(tracking_uri: str, study_name: str) -> dict[int, list]:
    by_number: dict[int, list] = {}
    for run in child_runs(tracking_uri, study_name):
        by_number.setdefault(int(run.data.tags["trial_number"]), []).append(run)
    return by_number


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def build_like_run_one(spec, storage_url: str, tracking_uri: str):
    """Study, tracker, parent run and objective, built the way ``runner._run_one`` does."""
    storage = make_storage(storage_url, spec)
    (ref,) = study_refs(spec)
    study = open_study(spec, storage, ref, storage_url=storage_url)
    tracker = Tracker(tracking_uri, spec)
    tracker.reconcile(study)
    parent = tracker.parent_run(study, arm=ref.arm)
    objective = Objective(
        spec, load_splits(spec), tracker=tracker, parent_run_id=parent, arm=ref.arm
    )
    return study, tracker, parent, objective


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_iris_study_maps_trials_and_child_runs_one_to_one(tmp_path, optuna_url, mlflow_uri):
    spec = load(tmp_path, "iris-e2e", study={"n_trials": 3}, train={"max_epochs": 3})
    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri)
    client = MlflowClient(mlflow_uri)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3

    (parent,) = parent_runs(mlflow_uri, "iris-e2e")
    assert parent.info.status == "FINISHED"
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    by_number = runs_by_number(mlflow_uri, "iris-e2e")
    assert sorted(by_number) == [0, 1, 2]
    for trial in trials:
        (run,) = by_number[trial.number]
        assert trial.user_attrs[RUN_ATTR] == run.info.run_id
        assert run.data.tags["trial_number"] == str(trial.number)
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.tags["state"] == "COMPLETE"
        assert run.data.tags["regularizer"] == trial.user_attrs["regularizer"]
        sampled = {
            k[len("sampled.") :]: v for k, v in run.data.params.items() if k.startswith("sampled.")
        }
        assert sampled == {k: str(v) for k, v in trial.params.items()}
        assert run.data.params["seed"] == str(trial.user_attrs["seed"])
        assert run.data.metrics["best_val_loss"] == trial.value
        steps = history(client, run.info.run_id, "val_loss")
        assert steps == sorted(trial.intermediate_values.items())
        assert run.data.metrics["test_accuracy"] == trial.user_attrs["test_accuracy"]
        # The per-epoch table and the weights of the best epoch, as files.
        files = artifacts(client, run.info.run_id, tmp_path / f"artifacts-{trial.number}")
        assert sorted(files) == ["history.csv", "weights.npz"]
        table = np.genfromtxt(files["history.csv"], delimiter=",", names=True)
        assert list(table["epoch"]) == sorted(trial.intermediate_values)
        assert list(table["val_loss"]) == [v for _, v in steps]
        with np.load(files["weights.npz"]) as weights:
            arrays = [weights[name] for name in weights.files]
        assert len(arrays) >= 2 and all(np.isfinite(a).all() for a in arrays)
        assert any(a.shape[0] == 4 for a in arrays)  # the first layer takes iris's 4 features
    assert mlflow.active_run() is None


def artifacts(client: MlflowClient, run_id: str, directory) -> dict[str, str]:
    """The run's artifact files, downloaded: name -> local path."""
    directory.mkdir()
    names = [a.path for a in client.list_artifacts(run_id)]
    return {name: client.download_artifacts(run_id, name, str(directory)) for name in names}


def test_two_threads_track_six_trials_without_mixing_runs(tmp_path, optuna_url, mlflow_uri):
    spec = load(
        tmp_path,
        "threads",
        study={"n_trials": 6},
        train={"max_epochs": 5},
        search={"regularizers": ["none", "l1", "l2", "dropout"]},
    )
    study, _, parent, objective = build_like_run_one(spec, optuna_url, mlflow_uri)
    # objective.finish closes each trial's run once Optuna has recorded the trial.
    study.optimize(objective, n_trials=6, n_jobs=2, callbacks=[objective.finish])

    client = MlflowClient(mlflow_uri)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6
    assert all(t.state == TrialState.COMPLETE for t in trials)
    by_number = runs_by_number(mlflow_uri, "threads")
    assert sorted(by_number) == list(range(6))
    for trial in trials:
        (run,) = by_number[trial.number]
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert trial.user_attrs[RUN_ATTR] == run.info.run_id
        sampled = {
            k[len("sampled.") :]: v for k, v in run.data.params.items() if k.startswith("sampled.")
        }
        assert sampled == {k: str(v) for k, v in trial.params.items()}
        epochs_run = int(run.data.metrics["epochs_run"])
        steps = history(client, run.info.run_id, "val_loss")
        assert [s for s, _ in steps] == list(range(epochs_run))
        assert dict(steps) == trial.intermediate_values
    assert mlflow.active_run() is None


def test_an_objective_error_after_a_real_epoch_fails_the_run_and_the_next_trial_works(
    tmp_path, optuna_url, mlflow_uri, monkeypatch
):
    spec = load(tmp_path, "error", study={"n_trials": 1}, train={"max_epochs": 3})
    real = objective_module.run_configuration
    calls: list[int] = []

    def fail_first(spec_, splits, params, seed, *, on_epoch=None, score_test=True):
        calls.append(seed)
        if len(calls) > 1:
            return real(spec_, splits, params, seed, on_epoch=on_epoch, score_test=score_test)

        def epoch_then_fail(epoch, record):
            on_epoch(epoch, record)
            raise ValueError("injected failure after a real epoch")

        return real(spec_, splits, params, seed, on_epoch=epoch_then_fail, score_test=score_test)

    monkeypatch.setattr(objective_module, "run_configuration", fail_first)
    with pytest.raises(ValueError, match="injected failure after a real epoch"):
        run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri)
    assert mlflow.active_run() is None

    client = MlflowClient(mlflow_uri)
    (run,) = runs_by_number(mlflow_uri, "error")[0]
    assert run.info.status == "FAILED"
    assert run.data.tags["state"] == "FAIL"
    assert "injected failure" in run.data.tags["fail_reason"]
    assert len(history(client, run.info.run_id, "val_loss")) == 1
    (parent,) = parent_runs(mlflow_uri, "error")
    assert parent.info.status == "FAILED"

    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.COMPLETE]
    by_number = runs_by_number(mlflow_uri, "error")
    assert by_number[0][0].info.status == "FAILED"
    (second,) = by_number[1]
    assert second.info.status == "FINISHED"
    assert second.data.tags["state"] == "COMPLETE"
    assert parent_runs(mlflow_uri, "error")[0].info.status == "FINISHED"
    assert mlflow.active_run() is None


def test_a_pruned_trial_closes_its_run_killed_with_state_pruned(
    tmp_path, optuna_url, mlflow_uri, monkeypatch
):
    spec = load(tmp_path, "pruned", study={"n_trials": 2}, train={"max_epochs": 4})
    monkeypatch.setattr(runner_module, "make_pruner", lambda spec_: AlwaysPrune())
    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri)

    client = MlflowClient(mlflow_uri)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    by_number = runs_by_number(mlflow_uri, "pruned")
    for trial in trials:
        assert trial.user_attrs["pruned_epoch"] == 0
        (run,) = by_number[trial.number]
        assert run.info.status == "KILLED"
        assert run.data.tags["state"] == "PRUNED"
        assert history(client, run.info.run_id, "val_loss") == [(0, trial.intermediate_values[0])]
        # The epochs it ran, but no final metrics and no weights: it did not finish.
        files = artifacts(client, run.info.run_id, tmp_path / f"artifacts-{trial.number}")
        assert sorted(files) == ["history.csv"]
        assert "test_accuracy" not in run.data.metrics
    assert mlflow.active_run() is None


def test_diverging_trials_fail_with_reason_and_epoch_and_the_study_goes_on(
    tmp_path, optuna_url, mlflow_uri
):
    # Random learning rates over seven decades under plain SGD: with this seed the first
    # two trials diverge (lr > 100) and the study goes on to its three finished trials.
    spec = load(
        tmp_path,
        "diverge",
        study={"n_trials": 3, "sampler": "random", "seed": 3},
        train={"max_epochs": 5, "optimizer": "sgd"},
        search={"learning_rate": [1e-3, 1e4], "regularizers": ["none"]},
    )
    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri)
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed, "no trial diverged: the scenario needs another seed"
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    by_number = runs_by_number(mlflow_uri, "diverge")
    for trial in trials:
        assert trial.value is None or math.isfinite(trial.value)
        assert all(math.isfinite(v) for v in trial.intermediate_values.values())
        (run,) = by_number[trial.number]
        if trial.state == TrialState.COMPLETE:
            assert run.info.status == "FINISHED"
            continue
        assert trial.value is None
        assert "learning_rate=" in trial.user_attrs["fail_reason"]
        assert 0 <= trial.user_attrs["fail_epoch"] < 5
        assert run.info.status == "FAILED"
        assert run.data.tags["state"] == "FAIL"
        assert "non-finite" in run.data.tags["fail_reason"]
    assert parent_runs(mlflow_uri, "diverge")[0].info.status == "FINISHED"
    assert mlflow.active_run() is None


def test_a_study_whose_every_trial_diverges_stops_with_one_error_line_after_trying(
    tmp_path, mlflow_uri
):
    path = write_spec(
        tmp_path,
        "all-diverge",
        study={"n_trials": 2},
        train={"max_epochs": 5, "optimizer": "sgd"},
        search={"learning_rate": [1e3, 1e4]},
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = run_cli(
        "run", str(path), "--quiet", "--storage", storage, "--tracking-uri", mlflow_uri
    )
    study = optuna.load_study(study_name="all-diverge", storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) >= 2  # every budgeted trial was attempted
    assert all(t.state == TrialState.FAIL for t in trials)
    assert all("learning_rate=" in t.user_attrs["fail_reason"] for t in trials)
    runs = child_runs(mlflow_uri, "all-diverge")
    assert len(runs) == len(trials)
    assert {r.info.status for r in runs} == {"FAILED"}
    (parent,) = parent_runs(mlflow_uri, "all-diverge")
    assert parent.info.status in ("FAILED", "FINISHED")

    # The command says so in one line (exit code 1: a failed run), not with a traceback.
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("regstudy: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "fail_reason" in errors[0]


def test_parent_run_is_not_left_running_when_run_study_returns_at_its_timeout(
    tmp_path, optuna_url, mlflow_uri
):
    spec = load(tmp_path, "timeout", study={"n_trials": 1000, "timeout": 0.3})
    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri)
    assert 1 <= len(study.get_trials()) < 1000
    # run_study returned normally; no process works on this study any more.
    (parent,) = parent_runs(mlflow_uri, "timeout")
    assert parent.info.status != "RUNNING"


WRITE_METHODS = (
    "create_experiment",
    "restore_experiment",
    "set_experiment_tag",
    "create_run",
    "update_run",
    "set_terminated",
    "delete_run",
    "log_batch",
    "log_metric",
    "log_param",
    "set_tag",
    "log_text",
    "log_dict",
    "log_artifact",
    "log_artifacts",
    "log_inputs",
    "log_outputs",
)


def test_a_300_epoch_trial_makes_few_writes_and_logs_complete_histories(
    tmp_path, optuna_url, mlflow_uri, monkeypatch
):
    spec = load(
        tmp_path,
        "writes",
        study={"n_trials": 1},
        train={"max_epochs": 300},
        search={"regularizers": ["none"], "patience": [1000, 1000], "learning_rate": [1e-3, 1e-2]},
    )
    calls: list[tuple[str, object]] = []

    def counting(name, method):
        def wrapper(self, *args, **kwargs):
            calls.append((name, args[0] if args else kwargs.get("run_id")))
            return method(self, *args, **kwargs)

        return wrapper

    for name in WRITE_METHODS:
        monkeypatch.setattr(MlflowClient, name, counting(name, getattr(MlflowClient, name)))
    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri)
    monkeypatch.undo()

    (trial,) = study.get_trials(deepcopy=False)
    assert trial.state == TrialState.COMPLETE
    run_id = trial.user_attrs[RUN_ATTR]
    for_trial = [name for name, target in calls if target == run_id]
    assert len(calls) <= 320, calls
    # Per-epoch metrics go in full batches: params, ceil(epochs * metrics / 1000) metric
    # batches, the final metrics (written before Optuna records the trial) and the closing
    # tags (after); a few artifact and status writes besides.
    metric_batches = math.ceil(300 * len(EPOCH_METRICS) / 1000)
    assert for_trial.count("log_batch") <= metric_batches + 3, for_trial
    assert len(for_trial) <= metric_batches + 10, for_trial
    # Both files (history.csv, weights.npz) in one artifact call: each is a run lookup.
    assert for_trial.count("log_artifacts") == 1, for_trial
    assert "log_artifact" not in for_trial and "log_text" not in for_trial, for_trial

    client = MlflowClient(mlflow_uri)
    run = client.get_run(run_id)
    assert run.data.metrics["epochs_run"] == 300
    for key in EPOCH_METRICS:
        points = client.get_metric_history(run_id, key)
        steps = sorted(m.step for m in points)
        assert steps == list(range(300)), key


def test_a_failed_trial_whose_worker_died_before_its_run_gets_one_closed_run(
    tmp_path, optuna_url, mlflow_uri
):
    spec = load(tmp_path, "lost", study={"n_trials": 1}, train={"max_epochs": 2})
    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri)
    # A worker that sampled a trial and died before creating its run: the heartbeat
    # fails the trial, and no run names it.
    trial = study.ask()
    params = suggest(trial, spec)
    study.tell(trial, state=TrialState.FAIL)
    assert sorted(runs_by_number(mlflow_uri, "lost")) == [0]

    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri, n_trials=2)
    by_number = runs_by_number(mlflow_uri, "lost")
    assert sorted(by_number) == [0, 1, 2]  # one run per trial, the lost one included
    (lost,) = by_number[trial.number]
    assert lost.info.status == "FAILED"
    assert lost.data.tags["state"] == "FAIL"
    assert lost.data.tags["closed_by"] == "reconcile"
    assert "before its run was created" in lost.data.tags["fail_reason"]
    assert lost.data.tags["regularizer"] == params.regularizer
    assert lost.data.tags["mlflow.parentRunId"] == study.user_attrs["mlflow_parent_run_id"]
    assert lost.data.params["sampled.learning_rate"] == str(trial.params["learning_rate"])
    # A second pass creates nothing more.
    run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri, n_trials=2)
    assert [len(runs) for runs in runs_by_number(mlflow_uri, "lost").values()] == [1, 1, 1]


def test_reconcile_leaves_a_just_ended_trials_run_to_its_live_worker(
    tmp_path, optuna_url, mlflow_uri
):
    # A worker closes a trial's run right after telling Optuna; another worker's reconcile
    # in that moment used to close it first, tagged closed_by=reconcile. Which worker ran a
    # trial is its "worker" attribute, host:pid.
    import socket
    import subprocess
    import sys

    spec = load(tmp_path, "race", study={"n_trials": 6}, train={"max_epochs": 2})
    study, tracker, parent, _ = build_like_run_one(spec, optuna_url, mlflow_uri)
    client = MlflowClient(mlflow_uri)
    host = socket.gethostname()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def ended_trial(worker: str, state: TrialState, fail_reason: str | None = None) -> str:
        trial = study.ask()
        run = tracker.start_trial(trial, suggest(trial, spec), 0, parent_run_id=parent)
        trial.set_user_attr("worker", worker)
        if fail_reason is not None:
            trial.set_user_attr("fail_reason", fail_reason)
        if state == TrialState.COMPLETE:
            study.tell(trial, 0.5)
        else:
            study.tell(trial, state=state)
        return run.run_id

    try:
        waiting = {
            # alive here, about to close its run
            ended_trial(f"{host}:{alive.pid}", TrialState.COMPLETE): "FINISHED",
            # on another host: no way to look, so it gets the grace period
            ended_trial("elsewhere:1", TrialState.FAIL, "DivergenceError"): "FAILED",
        }
        closing = {
            # failed by Optuna: its heartbeat stopped
            ended_trial("elsewhere:2", TrialState.FAIL): "FAILED",
            # its process is gone from this host (SIGKILLed between tell and close)
            ended_trial(f"{host}:{dead.pid}", TrialState.COMPLETE): "FINISHED",
            # this very process, which closes its runs before it reconciles
            ended_trial(f"{host}:{os.getpid()}", TrialState.PRUNED): "KILLED",
        }
        assert tracker.reconcile(study, grace_seconds=30) == len(closing)
    finally:
        alive.kill()
        alive.wait()
    for run_id in waiting:
        assert client.get_run(run_id).info.status == "RUNNING"
    for run_id, status in closing.items():
        run = client.get_run(run_id)
        assert (run.info.status, run.data.tags["closed_by"]) == (status, "reconcile")

    # Past the grace period their workers are taken for gone too.
    assert tracker.reconcile(study, grace_seconds=0) == len(waiting)
    for run_id, status in waiting.items():
        assert client.get_run(run_id).info.status == status


def test_a_tracked_resume_makes_no_run_for_failed_trials_of_an_untracked_session(
    tmp_path, optuna_url, mlflow_uri, monkeypatch
):
    spec = load(tmp_path, "mixed", study={"n_trials": 1}, train={"max_epochs": 2})

    def broken(*args, **kwargs):
        raise RuntimeError("no data today")

    with monkeypatch.context() as patched:
        patched.setattr(objective_module, "run_configuration", broken)
        with pytest.raises(RuntimeError, match="no data today"):
            run_study(spec, storage_url=optuna_url, tracking_uri=None)
    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    untracked = [n for n, state in states.items() if state == TrialState.FAIL]
    assert len(untracked) == 1
    # Failed with tracking off, so without a run on purpose: reconcile leaves them so.
    assert sorted(runs_by_number(mlflow_uri, "mixed")) == [
        n for n, state in states.items() if state == TrialState.COMPLETE
    ]
