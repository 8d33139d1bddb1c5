"""Sections 4 and 5: what Optuna and MLflow add to a study, and how trials scale with workers.

Section 4 runs the first trials of ``studies/digits.toml`` four ways, interleaved:
Optuna in SQLite with MLflow in SQLite (what ``regstudy run`` does), the same with MLflow
on an ``mlflow server`` on loopback (the many-machines set-up), Optuna in SQLite
without tracking (``--no-tracking``), and Optuna in memory without tracking (the same
objective and trial loop on ``optuna.storages.InMemoryStorage``). The trainer's own time in
every trial is measured inside the same runs by timing ``run_configuration`` minus the
per-epoch callback, so "Optuna plus MLflow" is the rest. Section 5 runs a small fixed
study with one and with two worker processes.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.measure import Samples, rotated, thread_limit
from benchmarks.report import Row
from core.testing import mlflow_server

REPO = Path(__file__).resolve().parents[1]
DIGITS_SPEC = REPO / "studies" / "digits.toml"
OVERHEAD_TARGET = 5.0  # percent of the wall time
WORKERS_TARGET = 1.8  # two workers against one, trials per minute

CONFIGS = ("sqlite+mlflow", "sqlite+server", "sqlite", "memory")

# Section 5's study: fixed work per trial (no pruning; patience can only fire if the first
# epoch is the best of twenty), sampled at random so neither run depends on the other's
# history.
WORKERS_HIDDEN = 64
WORKERS_SPEC: dict[str, Any] = {
    "study": {"name": "bench-workers", "n_trials": 40, "sampler": "random", "pruner": "none"},
    "data": {"dataset": "digits", "split_seed": 0},
    "model": {"hidden": [WORKERS_HIDDEN], "activation": "relu"},
    "train": {"max_epochs": 20, "batch_size": 64, "optimizer": "adam"},
    "search": {"patience": [19, 20]},
}


class TrainerClock:
    """Sums the seconds trials spend in ``run_configuration`` outside their epoch callback
    (which reports to Optuna, prunes and records to MLflow): the trainer's share. The
    callback's own seconds and calls are kept too."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.callback_seconds = 0.0
        self.epochs = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Wrap ``core.study.objective.run_configuration`` for the duration of a run."""
        from core.study import objective

        original = objective.run_configuration

        def timed(*args: Any, on_epoch=None, **kwargs: Any):
            in_callback = 0.0

            def timed_on_epoch(epoch: int, record: dict[str, float]) -> None:
                nonlocal in_callback
                self.epochs += 1
                started = time.perf_counter()
                try:
                    on_epoch(epoch, record)
                finally:
                    in_callback += time.perf_counter() - started

            started = time.perf_counter()
            try:
                callback = timed_on_epoch if on_epoch is not None else None
                return original(*args, on_epoch=callback, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started - in_callback
                self.callback_seconds += in_callback

        with mock.patch.object(objective, "run_configuration", timed):
            yield


def quiet_study_libraries() -> None:
    """Optuna and MLflow set their loggers to INFO on import (so import them first, as
    the study system will anyway); keep warnings only."""
    import logging

    import mlflow  # noqa: F401
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _run_in_memory(spec, n_trials: int):
    """The objective and trial loop of ``run_study`` on an in-memory Optuna storage."""
    import optuna

    from core.study.loop import run_trials
    from core.study.objective import Objective, load_splits
    from core.study.runner import make_pruner, make_sampler, sampler_seed

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        storage=storage,
        sampler=make_sampler(spec, None, sampler_seed(spec.study.seed, 0)),
        pruner=make_pruner(spec),
        direction=spec.study.optuna_direction,
        study_name=spec.study.name,
    )
    objective = Objective(spec, load_splits(spec))
    run_trials(study, objective, total=n_trials, storage=storage, storage_url="memory")
    return study


def _run_config(config: str, spec, n_trials: int, directory: Path, server: str | None):
    from core.study.runner import run_study

    if config == "memory":
        return _run_in_memory(spec, n_trials)
    tracking = {
        "sqlite+mlflow": f"sqlite:///{directory}/mlflow.db",
        "sqlite+server": server,
    }.get(config)
    storage = f"sqlite:///{directory}/optuna.db"
    (study,) = run_study(spec, storage_url=storage, tracking_uri=tracking, n_trials=n_trials)
    return study


def _trial_loop_seconds(study) -> float:
    """From the first trial's start to the last trial's end, as Optuna recorded them."""
    trials = [t for t in study.trials if t.datetime_start and t.datetime_complete]
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    return (last - first).total_seconds()


def measure_overhead(n_trials: int, repeats: int) -> dict[str, Any]:
    """Wall, trial-loop and trainer seconds of each configuration, interleaved."""
    from core.study.spec import load_spec

    quiet_study_libraries()
    spec = load_spec(DIGITS_SPEC)
    names = ("wall", "loop", "trainer", "rest", "loop_rest", "callback_per_epoch")
    figures = {config: {name: Samples() for name in names} for config in CONFIGS}
    signatures: dict[str, list] = {}
    # Warm-up, untimed: first imports, MLflow's and Optuna's first schema creation.
    with tempfile.TemporaryDirectory() as directory, thread_limit(1):
        _run_config("sqlite+mlflow", spec, 1, Path(directory), None)
    for repeat in range(repeats):
        for config in rotated(CONFIGS, repeat):
            clock = TrainerClock()
            with contextlib.ExitStack() as stack:
                directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                server = None
                if config == "sqlite+server":  # started and stopped outside the timing
                    backend = f"sqlite:///{directory}/server.db"
                    server = stack.enter_context(mlflow_server(backend, directory))
                with clock.installed(), thread_limit(1):  # one BLAS thread, as `regstudy run`
                    started = time.perf_counter()
                    study = _run_config(config, spec, n_trials, directory, server)
                    wall = time.perf_counter() - started
                figures[config]["wall"].add(wall)
                figures[config]["loop"].add(_trial_loop_seconds(study))
                figures[config]["trainer"].add(clock.seconds)
                figures[config]["rest"].add(wall - clock.seconds)
                figures[config]["loop_rest"].add(_trial_loop_seconds(study) - clock.seconds)
                per_epoch = clock.callback_seconds / max(clock.epochs, 1)
                figures[config]["callback_per_epoch"].add(per_epoch)
                signatures.setdefault(config, [(t.state.name, t.params) for t in study.trials])
    same = len({repr(signature) for signature in signatures.values()}) == 1
    return {
        "n_trials": n_trials,
        "spec_trials": spec.study.n_trials,  # the projection's budget
        "same_trials": same,
        "figures": figures,
    }


def overhead_rows(result: dict[str, Any]) -> list[Row]:
    """Section 4: overhead share of the wall time and per-trial milliseconds of each part.

    The three configurations run the same trials, but their training time still varies
    from run to run by more than the overhead being measured. So each run's own trainer
    seconds are taken out of its wall time first; what remains is the stores, the sampler,
    the pruner and the loop, and the overhead is what the stores add to it.
    """
    n = result["n_trials"]
    figures = result["figures"]
    wall = {config: figures[config]["wall"].median for config in CONFIGS}
    loop = {config: figures[config]["loop"].median for config in CONFIGS}
    trainer = {config: figures[config]["trainer"].median for config in CONFIGS}
    rest = {config: figures[config]["rest"].median for config in CONFIGS}
    loop_rest = {config: figures[config]["loop_rest"].median for config in CONFIGS}
    full = wall["sqlite+mlflow"]
    overhead = rest["sqlite+mlflow"] - rest["memory"]
    setup = {config: wall[config] - loop[config] for config in CONFIGS}
    per_trial_extra = (loop_rest["sqlite+mlflow"] - loop_rest["memory"]) / n
    per_trial_full = trainer["sqlite+mlflow"] / n + loop_rest["sqlite+mlflow"] / n
    total = result["spec_trials"]
    projected_full = setup["sqlite+mlflow"] + total * per_trial_full
    projected_extra = setup["sqlite+mlflow"] - setup["memory"] + total * per_trial_extra
    same = "same trials in all four" if result["same_trials"] else "TRIALS DIFFER between runs"
    # The share within each repeat (the configurations ran interleaved), for the spread.
    shares = [
        (tracked - memory) / whole * 100
        for tracked, memory, whole in zip(
            figures["sqlite+mlflow"]["rest"].values,
            figures["memory"]["rest"].values,
            figures["sqlite+mlflow"]["wall"].values,
            strict=True,
        )
    ]
    section = "4 study"
    name = f"digits.toml x{n}"
    return [
        Row(
            section,
            f"{name}: Optuna SQLite + MLflow overhead, share of wall",
            "eval",
            statistics.median(shares),
            "%",
            OVERHEAD_TARGET,
            detail=(
                f"medians {overhead:.2f} s of {full:.1f} s; raw walls {full:.1f} s vs "
                f"{wall['memory']:.1f} s in memory, untracked; {same}"
            ),
            spread=(min(shares), max(shares)),
        ),
        Row(
            section,
            f"digits.toml x{total} (projected from the first {n}): same overhead share",
            "eval",
            projected_extra / projected_full * 100,
            "%",
            OVERHEAD_TARGET,
            detail=f"setup {setup['sqlite+mlflow']:.1f} s + {total} x per-trial",
        ),
        Row(
            section,
            f"{name}: the same with MLflow on a server (loopback), share of wall",
            "eval",
            (rest["sqlite+server"] - rest["memory"]) / wall["sqlite+server"] * 100,
            "%",
            detail="each REST call waits for the server's own database write",
        ),
        Row(
            section,
            "per trial: MLflow server tracking, worker side",
            "-",
            (loop_rest["sqlite+server"] - loop_rest["sqlite"]) / n * 1e3,
            "ms",
        ),
        Row(
            section,
            "per trial: MLflow (SQLite) tracking",
            "-",
            (loop_rest["sqlite+mlflow"] - loop_rest["sqlite"]) / n * 1e3,
            "ms",
            detail=f"store setup {setup['sqlite+mlflow'] - setup['sqlite']:.1f} s once",
        ),
        Row(
            section,
            "per trial: Optuna SQLite storage over in-memory",
            "-",
            (loop_rest["sqlite"] - loop_rest["memory"]) / n * 1e3,
            "ms",
            detail=f"store setup {setup['sqlite'] - setup['memory']:.1f} s once",
        ),
        Row(
            section,
            "per trial: Optuna in memory (sampler, pruner, loop)",
            "-",
            loop_rest["memory"] / n * 1e3,
            "ms",
        ),
        Row(
            section,
            "per epoch: the trial's epoch callback (report, prune, record)",
            "-",
            result["figures"]["sqlite+mlflow"]["callback_per_epoch"].median * 1e3,
            "ms",
            detail=(
                "Optuna SQLite only "
                f"{result['figures']['sqlite']['callback_per_epoch'].median * 1e3:.2f} ms, "
                "in memory "
                f"{result['figures']['memory']['callback_per_epoch'].median * 1e3:.2f} ms"
            ),
        ),
        Row(
            section,
            "per trial: trainer (train + final metrics)",
            "eval",
            trainer["sqlite+mlflow"] / n * 1e3,
            "ms",
            detail=f"{trainer['sqlite+mlflow']:.1f} s over {n} trials",
        ),
    ]


def measure_workers(n_trials: int, repeats: int) -> dict[str, dict[str, Samples]]:
    """Trials per minute of the section 5 study with one and two worker processes: with
    MLflow tracking (as ``regstudy run --workers N`` does), without it, and with hidden
    layers wide enough (1,024 units) that training rather than the stores dominates."""
    from core.study.parallel import run_parallel
    from core.study.spec import parse_spec

    quiet_study_libraries()
    runs = [
        (workers, width, tracked)
        for width, tracked in ((WORKERS_HIDDEN, True), (WORKERS_HIDDEN, False), (1024, True))
        for workers in (1, 2)
    ]
    figures = {_workers_key(*run): {"steady": Samples(), "wall": Samples()} for run in runs}
    for repeat in range(repeats):
        for workers, width, tracked in rotated(runs, repeat):
            # The wide study's trials train 16x longer: a quarter as many keeps it short.
            trials = n_trials if width == WORKERS_HIDDEN else max(4, n_trials // 4)
            data = {
                **WORKERS_SPEC,
                "study": {**WORKERS_SPEC["study"], "n_trials": trials},
                "model": {**WORKERS_SPEC["model"], "hidden": [width]},
            }
            spec = parse_spec(data, source="benchmarks")
            with tempfile.TemporaryDirectory(prefix="regstudy-bench-") as directory:
                storage = f"sqlite:///{directory}/optuna.db"
                tracking = f"sqlite:///{directory}/mlflow.db" if tracked else None
                started = time.perf_counter()
                codes = run_parallel(
                    spec,
                    workers=workers,
                    storage_url=storage,
                    tracking_uri=tracking,
                    n_trials=trials,
                    poll_seconds=0.1,
                )
                wall = time.perf_counter() - started
                if any(code != 0 for code in codes):
                    raise RuntimeError(f"a worker exited with {codes}")
                study = _load_study(storage, spec.study.name)
            finished = [t for t in study.trials if t.state.is_finished()]
            key = _workers_key(workers, width, tracked)
            figures[key]["steady"].add(_steady_rate(finished, workers))
            figures[key]["wall"].add(len(finished) / wall * 60)
    return figures


def _workers_key(workers: int, width: int, tracked: bool) -> str:
    return f"{workers}/hidden {width}, {'mlflow' if tracked else 'untracked'}"


def _steady_rate(trials: list, workers: int) -> float:
    """Trials per minute while every worker runs: the trials done between the moment the
    last worker started its first trial and the moment the first worker finished its last
    one, over that window (each trial records its ``worker``). Process
    start-up, seconds apart between workers, falls outside the window, and no stretch
    where one worker runs alone counts as if both ran."""
    by_worker: dict[str, list] = {}
    for trial in trials:
        by_worker.setdefault(trial.user_attrs.get("worker", "?"), []).append(trial)
    if len(by_worker) != workers:
        # A worker that got no trial (the others finished first): the study was too short
        # for the start-up; report nothing rather than a one-worker rate.
        return float("nan")
    start = max(min(t.datetime_start for t in own) for own in by_worker.values())
    end = min(max(t.datetime_complete for t in own) for own in by_worker.values())
    window = (end - start).total_seconds()
    if window <= 0:
        return float("nan")
    # Each trial counts for the part of it inside the window, so the trials running at its
    # edges are neither counted whole nor dropped.
    done = 0.0
    for t in trials:
        inside = (min(end, t.datetime_complete) - max(start, t.datetime_start)).total_seconds()
        length = (t.datetime_complete - t.datetime_start).total_seconds()
        if length > 0:
            done += max(0.0, inside) / length
        else:  # an instant trial counts if it happened inside
            done += float(start <= t.datetime_start <= end)
    return done / window * 60


def _load_study(storage: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


def _finite_median(values) -> float:
    finite = [value for value in values if math.isfinite(value)]
    return statistics.median(finite) if finite else math.nan


def workers_rows(figures: dict[str, dict[str, Samples]], n_trials: int) -> list[Row]:
    """Section 5: two workers against one, once every worker runs (the target) and from the
    call to its return (process start-up included)."""
    plain = f"hidden {WORKERS_HIDDEN}, mlflow"
    cases = (
        (plain, "steady", WORKERS_TARGET),
        (plain, "wall", None),
        (f"hidden {WORKERS_HIDDEN}, untracked", "steady", None),
        ("hidden 1024, mlflow", "steady", None),
    )
    rows = []
    for study, basis, target in cases:
        ones, twos = figures[f"1/{study}"][basis].values, figures[f"2/{study}"][basis].values
        # A repeat where a worker got no trial has no rate (NaN): it is left out.
        one, two = _finite_median(ones), _finite_median(twos)
        ratios = [b / a for a, b in zip(ones, twos, strict=True) if math.isfinite(b / a)]
        detail = (
            f"{two:.0f} vs {one:.0f} trials/min"
            if math.isfinite(one) and math.isfinite(two)
            else "no repeat had both workers running at once (too few trials)"
        )
        label = "while both run" if basis == "steady" else "wall, with start-up"
        trials = (
            n_trials if study.startswith(f"hidden {WORKERS_HIDDEN},") else max(4, n_trials // 4)
        )
        rows.append(
            Row(
                "5 workers",
                f"{trials} trials, {study}: 2 workers / 1, trials/min ({label})",
                "eval",
                statistics.median(ratios) if ratios else math.nan,
                "x",
                target,
                at_most=False,
                detail=detail,
                spread=(min(ratios), max(ratios)) if ratios else None,
            )
        )
    return rows
