"""The trial loop: ask, run, tell, with an exact total budget across any number of workers.

Optuna's ``optimize(n_trials=...)`` counts the trials of one call, and a callback that
stops at a total lets concurrent workers overshoot it. Here a worker asks for a trial only
while holding a lock that every worker of the study shares (a file lock next to a SQLite
database, an advisory lock on PostgreSQL), after counting the trials that are finished,
running or waiting. So the study ends with exactly the requested number of finished
trials, and a worker whose slot is taken waits for running trials instead of leaving:
if one of them fails (its worker died and the heartbeat expired, or it diverged), the
slot opens again and the waiting worker fills it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

from core.nn import DivergenceError
from core.study import interrupts
from core.study.errors import TooManyFailures

logger = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HOLDS_A_SLOT = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
Callback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


@contextlib.contextmanager
def sqlite_lock(url: str) -> Iterator[None]:
    """An exclusive ``flock`` on ``PATH.lock`` beside the database of a ``sqlite:///PATH``
    URL; any other URL gets no lock. Serializes schema creation, which neither Optuna nor
    MLflow can run from several processes at once on one SQLite file."""
    if not url.startswith("sqlite:///"):
        yield
        return
    path = Path(url.split(":///", 1)[1] + ".lock")
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def storage_lock(storage_url: str, name: str) -> Iterator[None]:
    """An exclusive lock called ``name``, shared by every process using one storage.

    SQLite: a ``flock`` beside the database file (one per file, whatever the name).
    PostgreSQL: a session-level advisory lock keyed by the name.
    """
    if storage_url.startswith("sqlite"):
        with sqlite_lock(storage_url):
            yield
        return
    if storage_url.startswith("postgresql"):
        import sqlalchemy

        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        engine = sqlalchemy.create_engine(storage_url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    connection.execute(
                        sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key}
                    )
        finally:
            engine.dispose()
        return
    # Known limitation: other storages (MySQL) get no cross-process lock, so concurrent
    # workers there may race on schema creation and overshoot a budget by a trial each.
    yield


def study_lock(storage_url: str, study_name: str):
    """The lock every worker of one study takes to count trials and ask for one."""
    return storage_lock(storage_url, f"regstudy study {study_name}")


def schema_lock(storage_url: str):
    """The lock around creating a storage's tables, which races between processes."""
    return storage_lock(storage_url, "regstudy schema")


class _Heartbeat:
    """Records the running trial's heartbeat so a dead worker's trial can be failed."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        self.interval = None
        if isinstance(storage, optuna.storages.RDBStorage):
            self.interval = storage.get_heartbeat_interval()
        self.storage, self.trial_id = storage, trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        if self.interval:
            self.storage.record_heartbeat(self.trial_id)
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # a missed beat is not fatal; the next one may succeed
                logger.debug("heartbeat of trial %d failed", self.trial_id, exc_info=True)

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def fail_stale(study: optuna.Study) -> None:
    """Fail trials whose heartbeat stopped (their worker died)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def count(study: optuna.Study, states: Sequence[TrialState]) -> int:
    return len(study.get_trials(deepcopy=False, states=tuple(states)))


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    total: int,
    storage: optuna.storages.BaseStorage,
    storage_url: str,
    callbacks: Sequence[Callback] = (),
    timeout: float | None = None,
    max_failures: int | None = None,
    poll_seconds: float = 1.0,
) -> None:
    """Run trials until ``total`` are finished (complete or pruned) across all workers.

    Args:
        study: The study to fill.
        objective: Returns the value; raises ``optuna.TrialPruned`` or ``DivergenceError``.
        total: Finished trials the study must hold.
        storage: The study's storage (heartbeats are recorded there).
        storage_url: Names the lock shared with the other workers.
        callbacks: Called after each trial with the study and the frozen trial.
        timeout: Stop asking for new trials after this many seconds.
        max_failures: Failed trials this process tolerates (default: ``total``).

    Raises:
        TooManyFailures: More than ``max_failures`` trials failed here.
        KeyboardInterrupt: After telling Optuna that the running trial failed; Ctrl-C
            and SIGTERM are acted on between storage writes (``interrupts.graceful``).
    """
    with interrupts.graceful():
        _loop(
            study,
            objective,
            total,
            storage,
            storage_url,
            callbacks,
            timeout,
            total if max_failures is None else max_failures,
            poll_seconds,
        )


def _loop(
    study, objective, total, storage, storage_url, callbacks, timeout, max_failures, poll_seconds
) -> None:
    started = time.monotonic()
    failures = 0
    while True:
        interrupts.check()
        if timeout is not None and time.monotonic() - started > timeout:
            logger.info("timeout reached after %.0f s", time.monotonic() - started)
            return
        fail_stale(study)
        with study_lock(storage_url, study.study_name), warnings.catch_warnings():
            # Optuna warns that heartbeats are meant for optimize(); _Heartbeat beats here.
            warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
            trial = study.ask() if count(study, HOLDS_A_SLOT) < total else None
        if trial is None:
            if count(study, FINISHED) >= total:
                return
            time.sleep(poll_seconds)  # every slot is taken by a running trial: wait
            continue

        frozen = _run_one(study, trial, objective, storage)
        for callback in callbacks:
            callback(study, frozen)
        if frozen.state == TrialState.FAIL:
            failures += 1
            if failures > max_failures:
                raise TooManyFailures(
                    f"{failures} trials of study {study.study_name!r} failed in this worker "
                    f"(the limit is {max_failures}); see their fail_reason attributes"
                )


def _run_one(study, trial, objective, storage) -> optuna.trial.FrozenTrial:
    # Trial ids are what storages key heartbeats on; Optuna keeps them private on Trial.
    finish = getattr(objective, "finish", None)
    value, state = None, TrialState.COMPLETE
    with _Heartbeat(storage, trial._trial_id):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except DivergenceError:
            state = TrialState.FAIL
        except BaseException:
            frozen = study.tell(trial, state=TrialState.FAIL)
            if finish is not None:
                finish(study, frozen)
            raise
    # Optuna's record, then the run's closing: signals wait (see interrupts.graceful).
    if state == TrialState.COMPLETE:
        frozen = study.tell(trial, value)
    else:
        frozen = study.tell(trial, state=state)
    if finish is not None:
        finish(study, frozen)
    return frozen
