"""Several worker processes on one storage: ``regstudy run SPEC --workers N``.

Workers are processes, not threads (the trainer holds the GIL between BLAS calls), and
each one limits its BLAS pool to ``blas_threads`` so N workers on N cores do not
oversubscribe them. The parent creates the stores and the studies first, so workers only
ever attach, then it watches the storage to report progress.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

# Light imports only: a spawned worker imports this module before worker_main runs, which
# imports Optuna, scikit-learn and MLflow inside its SIGTERM handling (a SIGTERM during
# those seconds then stops the worker without a traceback).
from core.study.interrupts import exit_code, raise_terminated_once

if TYPE_CHECKING:
    import optuna

    from core.study.spec import Spec

logger = logging.getLogger(__name__)


def worker_main(
    spec: Spec,
    storage_url: str,
    tracking_uri: str | None,
    n_trials: int | None,
    blas_threads: int | None,
    log_level: int,
) -> None:
    """Entry point of one worker process: run the study with a bounded BLAS pool.

    The worker was started ignoring SIGINT and keeps ignoring it: the parent turns a
    Ctrl-C into one SIGTERM per worker (``run_parallel``)."""
    signal.signal(signal.SIGTERM, raise_terminated_once)
    logging.basicConfig(level=log_level, format="%(levelname)s worker %(process)d: %(message)s")
    for name in ("mlflow", "alembic", "sqlalchemy", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        import optuna

        from core.study.runner import run_study

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with limit_blas_threads(blas_threads):
            run_study(spec, storage_url=storage_url, tracking_uri=tracking_uri, n_trials=n_trials)
    except KeyboardInterrupt as interrupt:
        # The running trial is marked and its run closed; the parent tells the user, so
        # no traceback here (multiprocessing prints one for any exception but SystemExit).
        raise SystemExit(exit_code(interrupt)) from None


class limit_blas_threads:  # noqa: N801 - used like a function, as threadpoolctl's is
    """``threadpool_limits`` when a limit is given; nothing otherwise."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._context = None

    def __enter__(self) -> None:
        if self.limit is not None:
            from threadpoolctl import threadpool_limits

            self._context = threadpool_limits(limits=self.limit)
            self._context.__enter__()

    def __exit__(self, *exc_info) -> None:
        if self._context is not None:
            self._context.__exit__(*exc_info)


def prepare(spec: Spec, storage_url: str, tracking_uri: str | None) -> list[optuna.Study]:
    """Create both stores and every study once, before any worker starts."""
    from core.study.runner import open_stores

    _, studies, _ = open_stores(spec, storage_url, tracking_uri)
    return studies


def run_parallel(
    spec: Spec,
    *,
    workers: int,
    storage_url: str,
    tracking_uri: str | None,
    n_trials: int | None = None,
    blas_threads: int | None = 1,
    on_progress: Callable[[int, int], None] | None = None,
    poll_seconds: float = 1.0,
) -> list[int]:
    """Run ``workers`` processes on the spec's studies until every budget is spent.

    Args:
        on_progress: Called with (finished trials, total) across all studies while waiting.

    Returns:
        The exit codes of the workers (0 for each that finished normally).
    """
    from core.study.loop import FINISHED, count

    studies = prepare(spec, storage_url, tracking_uri)
    total = (n_trials or spec.study.n_trials) * len(studies)
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    processes = [
        context.Process(
            target=worker_main,
            args=(spec, storage_url, tracking_uri, n_trials, blas_threads, level),
            name=f"regstudy-worker-{index}",
        )
        for index in range(workers)
    ]
    try:
        with _children_ignore_sigint():
            for process in processes:
                process.start()
        while any(process.is_alive() for process in processes):
            if on_progress is not None:
                on_progress(sum(count(study, FINISHED) for study in studies), total)
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        _stop(processes)
        raise
    for process in processes:
        process.join()
    if on_progress is not None:
        on_progress(sum(count(study, FINISHED) for study in studies), total)
    return [process.exitcode for process in processes]


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Processes started in the block ignore SIGINT from birth, so a Ctrl-C at the terminal
    (sent to the whole process group) reaches only this parent, even while a worker is
    still importing; Python keeps an inherited "ignore" rather than raising
    KeyboardInterrupt. This process ignores it too for those few milliseconds.

    Known gap: a Ctrl-C inside that window is lost (the study runs on; a second Ctrl-C
    stops it). Blocking SIGINT instead would keep it pending, but starting a spawn
    process clears this process's signal mask (measured on CPython 3.11)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop(processes: list[multiprocessing.process.BaseProcess], grace: float = 60.0) -> None:
    """One SIGTERM to each started worker: each marks its running trial failed and closes
    its run. A worker still starting has no trial and just exits. Any left after ``grace``
    seconds is killed."""
    started = [process for process in processes if process.pid is not None]
    for process in started:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace
    for process in started:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in started:
        if process.is_alive():
            logger.warning("worker %d did not stop within %.0f s; killing it", process.pid, grace)
            process.kill()
            process.join()
