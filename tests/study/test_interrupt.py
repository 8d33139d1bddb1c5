"""Workers that die: a SIGKILLed run resumes to exactly its budget without duplicates (B15),
the killed trial and its MLflow run are failed by the next worker (B12), and SIGTERM closes
the running trial and its run (B18)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy
from mlflow import MlflowClient
from optuna.trial import TrialState

from core.study import runner
from core.study.interrupts import Terminated, raise_terminated
from core.study.runner import run_study
from core.study.storage import BatchedRDBStorage

from .helpers import (
    child_runs,
    load,
    parent_runs,
    reader_storage,
    run_cli,
    start_cli,
    stop_process,
    trials_of,
    wait_for,
    write_spec,
)

# Trials long enough to be caught mid-way: iris, two layers of 64, batch 8, no early stop.
# A single trial runs LONG_EPOCHS epochs (several seconds) so that the poller, which needs a
# moment to open the database, always finds it early; 400 epochs once finished first in CI.
LONG_EPOCHS = 4000
SLOW = {
    "model": {"hidden": [64, 64]},
    "train": {"batch_size": 8},
    "search": {"patience": [1000, 1000]},
}


def slow_spec(directory: Path, name: str, *, n_trials: int, epochs: int) -> Path:
    return write_spec(
        directory,
        name,
        study={"n_trials": n_trials, "pruner": "none", "heartbeat_interval": 1, "grace_period": 2},
        model=SLOW["model"],
        train={**SLOW["train"], "max_epochs": epochs},
        search=SLOW["search"],
    )


def run_args(spec: Path, directory: Path, mlflow_uri: str) -> list[str]:
    return [
        "run",
        str(spec),
        "--quiet",
        "--storage",
        f"sqlite:///{directory / 'optuna.db'}",
        "--tracking-uri",
        mlflow_uri,
    ]


def poll_trials(directory: Path, study_name: str, process, condition, timeout: float):
    """Wait until ``condition(trials)`` holds for the worker's study; fail if it exits."""
    storage = None

    def check():
        nonlocal storage
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"worker exited early with {process.returncode}:\n{err[-3000:]}")
        if storage is None:
            storage = reader_storage(directory / "optuna.db", study_name)
            if storage is None:
                return None
        trials = trials_of(storage, study_name)
        return trials if trials and condition(trials) else None

    return wait_for(check, timeout=timeout)


def count(trials, *states: TrialState) -> int:
    return sum(t.state in states for t in trials)


def running_with_reports(trials, early: int = LONG_EPOCHS // 4) -> bool:
    """A trial has reported, but fewer than ``early`` epochs (reports show up to a heartbeat
    late), so a signal sent now lands inside the trial rather than after it."""
    return any(
        t.state == TrialState.RUNNING and 0 < len(t.intermediate_values) < early for t in trials
    )


def final_trials(directory: Path, study_name: str):
    storage = reader_storage(directory / "optuna.db", study_name)
    assert storage is not None
    return trials_of(storage, study_name)


def test_sigkilled_run_resumes_to_exactly_its_budget_without_duplicates(tmp_path, mlflow_uri):
    name = "b15"
    spec = slow_spec(tmp_path, name, n_trials=10, epochs=200)
    args = run_args(spec, tmp_path, mlflow_uri)
    worker = start_cli(*args)
    try:
        poll_trials(
            tmp_path,
            name,
            worker,
            # Four trials done and the fifth killed mid-way, its MLflow run open.
            lambda trials: (
                count(trials, TrialState.COMPLETE) >= 4 and running_with_reports(trials, early=100)
            ),
            timeout=90,
        )
    finally:
        stop_process(worker, signal.SIGKILL)
    assert worker.returncode == -signal.SIGKILL
    time.sleep(3)  # > grace_period: the killed trial's heartbeat is stale now

    result = run_cli(*args, timeout=150)
    assert result.returncode == 0, result.stderr[-3000:]

    trials = final_trials(tmp_path, name)
    assert count(trials, TrialState.COMPLETE, TrialState.PRUNED) == 10
    assert count(trials, TrialState.FAIL) <= 1
    assert count(trials, TrialState.RUNNING, TrialState.WAITING) == 0
    rates = [t.params["learning_rate"] for t in trials if "learning_rate" in t.params]
    assert len(rates) >= 10
    assert len(set(rates)) == len(rates), "a resumed sampler replayed a learning rate"

    runs = child_runs(mlflow_uri, name)
    numbers = [int(r.data.tags["trial_number"]) for r in runs]
    assert len(numbers) == len(set(numbers)), "a trial number has two MLflow runs"
    by_number = {int(r.data.tags["trial_number"]): r for r in runs}
    for trial in trials:
        run = by_number[trial.number]
        assert run.info.status != "RUNNING"
        if trial.state == TrialState.COMPLETE:
            assert run.info.status == "FINISHED"
            assert trial.user_attrs["mlflow_run_id"] == run.info.run_id


def test_trial_of_a_killed_worker_and_its_run_are_failed_by_the_next_worker(tmp_path, mlflow_uri):
    name = "b12"
    spec = slow_spec(tmp_path, name, n_trials=1, epochs=LONG_EPOCHS)
    args = run_args(spec, tmp_path, mlflow_uri)
    worker = start_cli(*args)
    try:
        poll_trials(tmp_path, name, worker, running_with_reports, timeout=90)
    finally:
        stop_process(worker, signal.SIGKILL)
    assert worker.returncode == -signal.SIGKILL
    (killed,) = child_runs(mlflow_uri, name)
    assert killed.info.status == "RUNNING"  # nobody closed it: the process died
    time.sleep(3)

    result = run_cli(*args, timeout=120)  # another worker, for the one remaining trial
    assert result.returncode == 0, result.stderr[-3000:]

    trials = final_trials(tmp_path, name)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    client = MlflowClient(mlflow_uri)
    run = client.get_run(killed.info.run_id)
    assert run.data.tags["trial_number"] == "0"
    assert run.info.status in ("FAILED", "KILLED")
    assert run.data.tags["state"] == "FAIL"
    assert all(r.info.status != "RUNNING" for r in child_runs(mlflow_uri, name))


def test_sigterm_mid_trial_exits_non_zero_and_closes_the_trial_and_its_run(tmp_path, mlflow_uri):
    name = "sigterm"
    spec = slow_spec(tmp_path, name, n_trials=1, epochs=LONG_EPOCHS)
    # PYTHONFAULTHANDLER: a worker that hangs after SIGTERM is aborted with its stacks shown.
    worker = start_cli(*run_args(spec, tmp_path, mlflow_uri), PYTHONFAULTHANDLER="1")
    try:
        poll_trials(tmp_path, name, worker, running_with_reports, timeout=90)
        assert worker.poll() is None, "the trial ended before the signal could be sent"
        worker.send_signal(signal.SIGTERM)
        try:
            _, err = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.send_signal(signal.SIGABRT)
            _, err = worker.communicate(timeout=30)
            pytest.fail(f"the worker still ran 30 s after SIGTERM; its stacks:\n{err[-8000:]}")
    finally:
        stop_process(worker, signal.SIGKILL)
    # Non-zero, and exited by itself (the handler ran) rather than killed by the signal.
    assert worker.returncode > 0, err[-3000:]
    assert "terminated" in err

    (trial,) = final_trials(tmp_path, name)
    assert trial.state == TrialState.FAIL
    (run,) = child_runs(mlflow_uri, name)
    assert run.info.status in ("KILLED", "FAILED")
    assert run.data.tags["state"] == "FAIL"
    (parent,) = parent_runs(mlflow_uri, name)
    assert parent.info.status == "KILLED"


class _InterruptedStorage(BatchedRDBStorage):
    """The runner's storage, writing every epoch report at once, that receives a real
    SIGTERM in the middle of a database read, right after SQLite stepped a SELECT following
    the third epoch report. Busy waits last 1 s, not the runner's 60 s, so a lock left
    behind would show up quickly."""

    def __init__(self, url, *args, engine_kwargs=None, **kwargs):
        kwargs["engine_kwargs"] = {**(engine_kwargs or {}), "connect_args": {"timeout": 1}}
        kwargs["flush_seconds"] = 0.0
        super().__init__(url, *args, **kwargs)
        reports: list[str] = []
        fired: list[str] = []

        def after_execute(conn, cursor, statement, parameters, context, executemany):
            sql = statement.lstrip().upper()
            if "TRIAL_INTERMEDIATE_VALUES" in sql and not sql.startswith("SELECT"):
                reports.append(sql)
            elif sql.startswith("SELECT") and len(reports) >= 3 and not fired:
                fired.append(sql)
                os.kill(os.getpid(), signal.SIGTERM)

        sqlalchemy.event.listen(self.engine, "after_cursor_execute", after_execute)


def test_sigterm_landing_in_a_storage_read_still_fails_the_trial_and_closes_its_run(
    tmp_path, optuna_url, mlflow_uri, monkeypatch
):
    spec = load(tmp_path, "sigterm-read", study={"n_trials": 1}, train={"max_epochs": 6})
    monkeypatch.setattr(runner, "BatchedRDBStorage", _InterruptedStorage)
    # As the command line does: SIGTERM raises Terminated outside the trial loop.
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    started = time.monotonic()
    try:
        with pytest.raises(Terminated, match="received signal 15"):
            run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri)
    finally:
        signal.signal(signal.SIGTERM, previous)
    elapsed = time.monotonic() - started
    monkeypatch.undo()

    (trial,) = final_trials(tmp_path, "sigterm-read")
    assert trial.state == TrialState.FAIL
    (run,) = child_runs(mlflow_uri, "sigterm-read")
    assert run.info.status in ("KILLED", "FAILED")
    assert run.data.tags["state"] == "FAIL"
    assert elapsed < 20


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_to_a_pool_of_workers_is_one_message_and_no_traceback(
    tmp_path, mlflow_uri, sig, code, word
):
    # Ctrl-C in a terminal reaches the whole process group, workers included; so does a
    # SIGTERM sent to the group (as a job scheduler may).
    name = f"pool-{word}"
    spec = slow_spec(tmp_path, name, n_trials=4, epochs=LONG_EPOCHS)
    pool = start_cli(*run_args(spec, tmp_path, mlflow_uri), "--workers", "2")
    try:
        poll_trials(tmp_path, name, pool, running_with_reports, timeout=120)
        os.killpg(pool.pid, sig)
        _, err = pool.communicate(timeout=60)
    finally:
        stop_process(pool, signal.SIGKILL)
    assert pool.returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert f"regstudy: {word}; a running trial is marked failed" in err
    assert "workers failed" not in err
    trials = final_trials(tmp_path, name)
    assert count(trials, TrialState.FAIL) >= 1
    assert count(trials, TrialState.RUNNING, TrialState.WAITING) == 0
    failed = {t.number for t in trials if t.state == TrialState.FAIL}
    for run in child_runs(mlflow_uri, name):
        assert run.info.status != "RUNNING"
        if int(run.data.tags["trial_number"]) in failed:
            # Closed by its own worker as interrupted, not left for reconcile: one signal
            # per worker, even when the group's SIGTERM and the parent's both arrive.
            assert run.info.status == "KILLED", run.data.tags
            assert "closed_by" not in run.data.tags


def _group_size(pgid: int) -> int:
    """Processes in process group ``pgid`` (Linux /proc)."""
    size = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            size += int(fields[2]) == pgid  # the field after state and parent id
    return size


@pytest.mark.parametrize("delay", [0.05, 0.3, 1.0])
def test_ctrl_c_while_the_workers_still_start_is_one_message_too(tmp_path, mlflow_uri, delay):
    # The workers are starting Python, unpickling the spec or importing Optuna,
    # scikit-learn and MLflow when the signal lands: they were born ignoring SIGINT, and the
    # parent stops them with SIGTERM (a traceback from each, in CI, before). Not at 0 s:
    # the parent itself ignores SIGINT for the milliseconds it takes to start them.
    spec = slow_spec(tmp_path, "early", n_trials=4, epochs=400)
    pool = start_cli(*run_args(spec, tmp_path, mlflow_uri), "--workers", "2")
    try:
        wait_for(lambda: _group_size(pool.pid) >= 3, timeout=60, interval=0.01)
        time.sleep(delay)
        os.killpg(pool.pid, signal.SIGINT)
        _, err = pool.communicate(timeout=60)
    finally:
        stop_process(pool, signal.SIGKILL)
    assert pool.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "regstudy: interrupted" in err


@pytest.mark.parametrize("code", [143, -9], ids=["sigterm", "sigkill"])
@pytest.mark.parametrize("spent", [True, False], ids=["budget-spent", "budget-left"])
def test_a_pool_whose_worker_was_signalled_says_what_is_left(
    tmp_path, monkeypatch, capsys, spent, code
):
    # One worker signalled by someone, the parent untouched: if the others finished every
    # budget, there is nothing to resume and the run succeeded.
    import core.study.parallel as parallel
    from core.cli import build_parser, cmd_run

    spec_path = slow_spec(tmp_path, "pool-left", n_trials=2, epochs=2)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    def pool(spec, **kwargs):
        if spent:
            run_study(spec, storage_url=storage, tracking_uri=None)
        return [0, code]

    monkeypatch.setattr(parallel, "run_parallel", pool)
    argv = ["run", str(spec_path), "--workers", "2", "--quiet", "--no-tracking"]
    exit_code = cmd_run(build_parser().parse_args([*argv, "--storage", storage]))
    (line,) = capsys.readouterr().err.splitlines()  # one line, no blank one above it
    if spent:
        assert exit_code == 0
        assert line.startswith("regstudy: warning: 1 of 2 workers were stopped by a signal")
    elif code == 143:
        assert exit_code == 143
        assert line.startswith("regstudy: terminated; a running trial is marked failed")
    else:  # killed: its trial waits for its heartbeat to go stale; a rerun resumes it
        assert exit_code == 1
        assert "1 of 2 workers failed (exit codes [-9])" in line
