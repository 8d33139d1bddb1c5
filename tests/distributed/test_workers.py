"""Distributed studies: worker processes on one PostgreSQL storage and one MLflow server.

Everything is real and on loopback: the PostgreSQL server named by REGSTUDY_TEST_POSTGRES
(a fresh database per test, dropped afterwards), an ``mlflow server`` started by the test,
and ``regstudy worker`` processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-pw-4417"
N_TRIALS = 12


def spec_text(
    name: str, *, epochs: int = 4, hidden: int = 8, long: bool = False, n_trials: int = N_TRIALS
) -> str:
    """A spec; ``long`` trials run every epoch (no early stopping), so a signal sent once a
    trial has reported lands inside it."""
    search = "\n[search]\npatience = [100000, 100000]\n" if long else ""
    return (
        search
        + f"""
[study]
name = "{name}"
n_trials = {n_trials}
pruner = "none"
heartbeat_interval = 1
grace_period = 3

[data]
dataset = "iris"

[model]
hidden = [{hidden}]

[train]
max_epochs = {epochs}
"""
    )


def with_password(url: str, password: str) -> str:
    """The URL with a password added (trust authentication ignores it; logs must not)."""
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def start_worker(spec: Path, storage: str, tracking: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "core", "worker", str(spec), "--storage", storage,
         "--tracking-uri", tracking, "--quiet"],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip


def finish(worker: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    out, err = worker.communicate(timeout=timeout)
    return worker.returncode, out + err


def wait_for(predicate, *, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s")


def study_trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return []


def trial_runs(tracking: str, name: str) -> list:
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("role") == "trial"]


def assert_consistent(storage: str, tracking: str, name: str, n_trials: int = N_TRIALS) -> list:
    """Exactly n_trials finished, nothing running, one run per trial number, all closed."""
    trials = study_trials(storage, name)
    states = Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == n_trials
    assert states[TrialState.RUNNING] == 0
    assert states[TrialState.WAITING] == 0
    runs = trial_runs(tracking, name)
    numbers = [int(r.data.tags["trial_number"]) for r in runs]
    assert len(numbers) == len(set(numbers)), "a trial number has two MLflow runs"
    assert sorted(numbers) == sorted(t.number for t in trials)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    by_number = {t.number: t for t in trials}
    expected = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for run in runs:
        trial = by_number[int(run.data.tags["trial_number"])]
        assert run.data.tags["state"] == trial.state.name
        if trial.state == TrialState.FAIL:
            assert run.info.status in ("FAILED", "KILLED")
        else:
            assert run.info.status == expected[trial.state.name]
    return runs


def test_three_workers_fill_one_study_with_matching_runs(postgres_url, mlflow_server, tmp_path):
    spec = tmp_path / "three.toml"
    spec.write_text(spec_text("three"))
    storage = with_password(postgres_url, PASSWORD)
    workers = [start_worker(spec, storage, mlflow_server) for _ in range(3)]
    results = [finish(worker) for worker in workers]

    for code, output in results:
        assert code == 0, output
        assert PASSWORD not in output
    trials = study_trials(storage, "three")
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: N_TRIALS}
    runs = assert_consistent(storage, mlflow_server, "three")
    client = MlflowClient(mlflow_server)
    by_number = {t.number: t for t in trials}
    for run in runs:
        trial = by_number[int(run.data.tags["trial_number"])]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        sampled = {k.removeprefix("sampled."): v for k, v in run.data.params.items()
                   if k.startswith("sampled.")}  # fmt: skip
        assert sampled == {k: str(v) for k, v in trial.params.items()}
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == list(range(len(trial.intermediate_values)))
        assert [m.value for m in history] == [
            trial.intermediate_values[step] for step in sorted(trial.intermediate_values)
        ]
        # Credentials never reach params or tags.
        assert PASSWORD not in repr(run.data.params) + repr(run.data.tags)
    parent = client.get_run(trials[0].user_attrs["mlflow_run_id"]).data.tags["mlflow.parentRunId"]
    assert client.get_run(parent).info.status == "FINISHED"
    assert PASSWORD not in repr(client.get_run(parent).data.params)


def _reporting(trials) -> int:
    return sum(t.state == TrialState.RUNNING and bool(t.intermediate_values) for t in trials)


# Signal tests run trials of LONG_EPOCHS epochs (about 1 ms each on iris) and signal a worker
# only while its own trial shows fewer than EARLY reports. Reports reach the database up to
# a heartbeat (1 s) late, so the trial then has at least ~2 s left: the signal lands inside
# it, not in the gap between two trials.
LONG_EPOCHS = 4000
EARLY = LONG_EPOCHS // 4


def _early_in_a_trial(trials, worker: subprocess.Popen) -> bool:
    """Whether ``worker`` runs a trial that has reported, but not far yet."""
    return any(
        t.state == TrialState.RUNNING
        and str(t.user_attrs.get("worker", "")).endswith(f":{worker.pid}")
        and 0 < len(t.intermediate_values) < EARLY
        for t in trials
    )


def _both_mid_trial(storage: str, name: str, victim: subprocess.Popen) -> bool:
    # Both workers inside a trial, the victim early in its own, so it surely dies mid-trial.
    trials = study_trials(storage, name)
    return _reporting(trials) == 2 and _early_in_a_trial(trials, victim)


def _three_complete(storage: str, name: str, victim: subprocess.Popen) -> bool:
    trials = study_trials(storage, name)
    done = sum(t.state == TrialState.COMPLETE for t in trials) >= 3
    return done and _reporting(trials) == 2 and _early_in_a_trial(trials, victim)


@pytest.mark.parametrize(
    ("kill_point", "predicate"),
    [("first-reports", _both_mid_trial), ("after-three-trials", _three_complete)],
)
def test_sigkilled_worker_leaves_nothing_running_after_a_replacement(
    postgres_url, mlflow_server, tmp_path, kill_point, predicate
):
    name = f"kill-{kill_point}"
    spec = tmp_path / "kill.toml"
    # Six long trials (see LONG_EPOCHS), so the kill lands inside one: up to three done,
    # one killed, the rest shared by the survivor and the replacement.
    spec.write_text(spec_text(name, epochs=LONG_EPOCHS, hidden=32, long=True, n_trials=6))
    storage = postgres_url
    victim = start_worker(spec, storage, mlflow_server)
    survivor = start_worker(spec, storage, mlflow_server)
    try:
        wait_for(lambda: predicate(storage, name, victim), timeout=180, interval=0.05)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.communicate(timeout=30)
        replacement = start_worker(spec, storage, mlflow_server)
        results = [finish(survivor, timeout=400), finish(replacement, timeout=400)]
    finally:
        for process in (victim, survivor):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    for code, output in results:
        assert code == 0, output

    runs = assert_consistent(storage, mlflow_server, name, n_trials=6)
    failed = [t for t in study_trials(storage, name) if t.state == TrialState.FAIL]
    assert len(failed) == 1  # the killed trial, failed by the heartbeat
    (killed_run,) = [r for r in runs if int(r.data.tags["trial_number"]) == failed[0].number]
    assert killed_run.info.status in ("FAILED", "KILLED")


def test_sigterm_stops_a_worker_after_marking_its_trial_and_run(
    postgres_url, mlflow_server, tmp_path
):
    spec = tmp_path / "term.toml"
    spec.write_text(spec_text("term", epochs=LONG_EPOCHS, hidden=32, long=True))
    worker = start_worker(spec, postgres_url, mlflow_server)
    try:
        early = lambda: _early_in_a_trial(study_trials(postgres_url, "term"), worker)  # noqa: E731
        wait_for(early, timeout=120, interval=0.05)
        os.killpg(worker.pid, signal.SIGTERM)
        code, output = finish(worker, timeout=60)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    assert code != 0
    assert "Traceback" not in output
    trials = study_trials(postgres_url, "term")
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    (interrupted,) = [t for t in trials if t.state == TrialState.FAIL]
    (run,) = [
        r for r in trial_runs(mlflow_server, "term")
        if int(r.data.tags["trial_number"]) == interrupted.number
    ]  # fmt: skip
    assert run.info.status == "KILLED"
    assert run.data.tags["state"] == "FAIL"


def test_a_database_that_refuses_the_worker_is_one_line_and_nothing_is_created(
    postgres_databases, tmp_path
):
    spec = tmp_path / "refused.toml"
    spec.write_text(spec_text("refused"))
    base = postgres_databases.base.rsplit("/", 1)[0] + "/regstudy_no_such_database"
    tracking = tmp_path / "mlflow.db"
    result = subprocess.run(
        [sys.executable, "-m", "core", "run", str(spec), "--storage",
         with_password(base, PASSWORD), "--tracking-uri", f"sqlite:///{tracking}"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("regstudy: error: --storage")
    assert result.stderr.count("\n") == 1
    assert "regstudy_no_such_database" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    assert not tracking.exists()
