"""Create or resume studies on an Optuna storage and run their trials.

A study's budget is a total: running the same spec again finishes the remaining trials
(complete or pruned ones count; failed ones do not). A resumed study must have been made
from the same spec values (budget and report settings aside); otherwise the run stops
before creating any trial and names the field that changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from core.study import interrupts
from core.study.errors import DEFAULT_STORAGE, DEFAULT_TRACKING_URI, StorageError
from core.study.loop import (
    FINISHED,
    count,
    fail_stale,
    run_trials,
    schema_lock,
    sqlite_lock,
    study_lock,
)
from core.study.objective import Objective, load_splits
from core.study.pruning import SnapshotPruner
from core.study.sampling import SnapshotSampler
from core.study.space import grid_space
from core.study.spec import ARMS, Spec, SpecError
from core.study.sqlite import leave_wal, use_wal
from core.study.storage import FLUSH_SECONDS, BatchedRDBStorage
from core.study.urls import (
    check_distinct,
    check_storage_url,
    check_tracking_uri,
    create_default_directory,
    database_message,
    mask_url,
    probe_database,
    probe_tracking_server,
)
from core.tracking import Tracker, flatten

logger = logging.getLogger(__name__)

SPEC_ATTR = "spec"
ATTACH_ATTR = "processes_attached"


@dataclass(frozen=True)
class StudyRef:
    """One Optuna study of a spec: the whole study in joint mode, one arm in per_kind."""

    name: str
    arm: str | None


def study_refs(spec: Spec) -> list[StudyRef]:
    """The Optuna studies a spec runs: ``NAME`` in joint mode, ``NAME/ARM`` per arm."""
    if spec.study.mode == "joint":
        return [StudyRef(spec.study.name, None)]
    arms = spec.search.arms or ARMS
    return [StudyRef(f"{spec.study.name}/{arm}", arm) for arm in arms]


def make_storage(url: str, spec: Spec) -> BatchedRDBStorage:
    """An RDB storage with heartbeats, so trials of killed workers are failed, not stuck,
    that writes per-epoch reports in batches (``core.study.storage``)."""
    check_storage_url(url)
    engine_kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # Wait for a busy database instead of failing at once when workers write together.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return BatchedRDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=spec.study.heartbeat_interval,
                grace_period=spec.study.grace_period,
                # A running trial's reports reach the database as often as its heartbeat.
                flush_seconds=min(FLUSH_SECONDS, spec.study.heartbeat_interval),
            )
    except Exception as error:  # SQLAlchemy raises many kinds; report one line
        raise StorageError(database_message(url, error)) from None


def make_sampler(spec: Spec, arm: str | None, seed: int) -> optuna.samplers.BaseSampler:
    if spec.study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.study.sampler == "grid":
        return _GridSampler(grid_space(spec, arm), seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Constant liar: workers sharing the study do not all try the same point. It makes
        # TPE read the whole study at every parameter; the wrapper reads it once per trial.
        return SnapshotSampler(
            optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=True,
                constant_liar=True,
                n_startup_trials=min(10, max(3, spec.study.n_trials // 4)),
            )
        )


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` at the end of the grid, which
    only works inside ``Study.optimize``; the trial loop caps a grid study's budget at the
    grid's size instead (``_budget``)."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def make_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    """The spec's pruner. The median pruner reads the study once per trial
    (``SnapshotPruner``); hyperband reads it only at its rungs and stays bare, since it
    wraps the study it is given in per-bracket studies of its own and samplers look for a
    bare ``HyperbandPruner`` to see those brackets."""
    epochs = spec.train.max_epochs
    if spec.study.pruner == "median":
        return SnapshotPruner(
            optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 5))
        )
    if spec.study.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, epochs // 10), max_resource=epochs, reduction_factor=3
        )
    return optuna.pruners.NopPruner()


def sampler_seed(study_seed: int, attach_index: int) -> int:
    """The sampler seed of the ``attach_index``-th process to open a study.

    Each process that opens a study (a resume, another worker) gets the next index, so no
    two samplers of one study share a random stream: a restarted or parallel sampler never
    replays the random start-up proposals of another, while a fresh single-process study
    is reproducible from the spec's seed.
    """
    state = np.random.SeedSequence([study_seed, attach_index]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF


def _check_compatible(spec: Spec, study_name: str, stored: str | None, storage_url: str) -> None:
    if stored is None:
        return
    old = flatten(json.loads(stored))
    new = flatten(spec.identity())
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            raise SpecError(
                f"{key} changed from {old.get(key)!r} to {new.get(key)!r} since study "
                f"{study_name!r} was created in {mask_url(storage_url)}; give the changed "
                f"spec a new [study] name (for example {study_name.split('/')[0] + '-2'!r}) "
                "or restore the old value"
            )


def open_study(
    spec: Spec,
    storage: optuna.storages.BaseStorage,
    ref: StudyRef,
    *,
    storage_url: str,
) -> optuna.Study:
    """Load the study if it exists (after checking it came from the same spec), else create
    it, and give this process a sampler seeded by its attach index."""
    existing = None
    with contextlib.suppress(KeyError):
        existing = optuna.load_study(study_name=ref.name, storage=storage)
    if existing is not None:
        _check_compatible(spec, ref.name, existing.user_attrs.get(SPEC_ATTR), storage_url)
    with study_lock(storage_url, ref.name):
        study = optuna.create_study(
            storage=storage,
            pruner=make_pruner(spec),
            study_name=ref.name,
            direction=spec.study.optuna_direction,
            load_if_exists=True,
        )
        attrs = study.user_attrs
        if SPEC_ATTR not in attrs:
            study.set_user_attr(SPEC_ATTR, json.dumps(spec.identity(), sort_keys=True))
            study.set_user_attr("spec_hash", spec.fingerprint())
            study.set_user_attr("study_seed", spec.study.seed)
            if ref.arm is not None:
                study.set_user_attr("arm", ref.arm)
        attach_index = int(attrs.get(ATTACH_ATTR, 0))
        study.set_user_attr(ATTACH_ATTR, attach_index + 1)
    study.sampler = make_sampler(spec, ref.arm, sampler_seed(spec.study.seed, attach_index))
    return study


TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def run_study(
    spec: Spec,
    *,
    storage_url: str = DEFAULT_STORAGE,
    tracking_uri: str | None = DEFAULT_TRACKING_URI,
    n_trials: int | None = None,
    callbacks: Sequence[TrialCallback] = (),
    on_study: Callable[[optuna.Study, int], None] | None = None,
) -> list[optuna.Study]:
    """Run (or resume) every Optuna study of ``spec`` until each has its total budget.

    Args:
        spec: Validated spec.
        storage_url: Optuna storage URL.
        tracking_uri: MLflow tracking URI, or None to track nothing.
        n_trials: Total finished trials per study; defaults to ``spec.study.n_trials``.
        callbacks: Optuna trial callbacks (the command line's progress bar).
        on_study: Called with each study and its remaining budget before it runs.

    Raises:
        SpecError: The stored study was made from different spec values.
        StorageError: The storage URL cannot be used.
        KeyboardInterrupt: After marking the running trial and closing its run.
    """
    total = n_trials or spec.study.n_trials
    storage, studies, tracker = open_stores(spec, storage_url, tracking_uri)
    splits = load_splits(spec)
    try:
        for ref, study in zip(study_refs(spec), studies, strict=True):
            _run_one(
                spec, study, ref, splits, tracker, _budget(spec, ref, total), callbacks,
                on_study, storage, storage_url,
            )  # fmt: skip
    finally:
        storage.engine.dispose()
        leave_wal(storage_url)
        if tracker is not None:
            tracker.close()
            leave_wal(tracker.tracking_uri)
    return studies


def open_stores(
    spec: Spec, storage_url: str, tracking_uri: str | None
) -> tuple[optuna.storages.BaseStorage, list[optuna.Study], Tracker | None]:
    """Check both locations, then open MLflow, then the Optuna storage and studies.

    Interrupts wait until this is done: a Ctrl-C in the middle of MLflow's first schema
    migration left a SQLite store that no later run could open.
    """
    check_storage_url(storage_url)
    if tracking_uri is not None:
        check_tracking_uri(tracking_uri)
        check_distinct(storage_url, tracking_uri)
        probe_tracking_server(tracking_uri)
    probe_database(storage_url)  # a server that refuses us fails before MLflow is touched
    create_default_directory(storage_url)  # every check passed: now runs/ may be made
    if tracking_uri is not None:
        create_default_directory(tracking_uri)
    with interrupts.graceful():
        tracker = None
        if tracking_uri is not None:
            with sqlite_lock(tracking_uri):
                use_wal(tracking_uri)
                tracker = open_tracker(tracking_uri, spec)
        try:
            with schema_lock(storage_url):  # schema creation, once, whoever comes first
                use_wal(storage_url)
                storage = make_storage(storage_url, spec)
        except StorageError:
            raise
        except Exception as error:  # the lock's own connection failed: one line, masked
            raise StorageError(database_message(storage_url, error)) from None
        studies = [
            open_study(spec, storage, ref, storage_url=storage_url) for ref in study_refs(spec)
        ]
    return storage, studies, tracker


def open_tracker(tracking_uri: str, spec: Spec) -> Tracker:
    try:
        return Tracker(tracking_uri, spec)
    except Exception as error:  # MLflow and SQLAlchemy raise many kinds; report one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise StorageError(
            f"--tracking-uri {mask_url(tracking_uri)!r} cannot be opened as an MLflow store: "
            f"{type(error).__name__}: {first[:300]}"
        ) from None


def grid_size(spec: Spec, arm: str | None) -> int:
    return int(np.prod([len(values) for values in grid_space(spec, arm).values()]))


def study_budget(spec: Spec, ref: StudyRef, total: int) -> int:
    """The trial budget of one study: a grid study stops when its grid is walked."""
    if spec.study.sampler != "grid":
        return total
    return min(total, grid_size(spec, ref.arm))


def _budget(spec: Spec, ref: StudyRef, total: int) -> int:
    """``study_budget``, saying when the grid cuts it short."""
    budget = study_budget(spec, ref, total)
    if budget < total:
        logger.info(
            "study %s: the grid has %d points; running %d trials, not %d",
            ref.name,
            budget,
            budget,
            total,
        )
    return budget


def _run_one(
    spec, study, ref, splits, tracker, total, callbacks, on_study, storage, storage_url
) -> None:
    fail_stale(study)
    parent_run_id = None
    if tracker is not None:
        # Under the lock: one parent run and one run per trial, however many workers.
        with study_lock(storage_url, study.study_name):
            tracker.reconcile(study, grace_seconds=spec.study.grace_period)
            parent_run_id = tracker.parent_run(study, arm=ref.arm)
    objective = Objective(spec, splits, tracker=tracker, parent_run_id=parent_run_id, arm=ref.arm)
    remaining = total - count(study, FINISHED)
    if on_study is not None:
        on_study(study, max(remaining, 0))
    if remaining <= 0:
        logger.info(
            "study %s already has %d finished trials (budget %d)",
            study.study_name,
            total - remaining,
            total,
        )
    status = "FINISHED"
    try:
        run_trials(
            study,
            objective,
            total=total,
            storage=storage,
            storage_url=storage_url,
            callbacks=callbacks,
            timeout=spec.study.timeout,
        )
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        if tracker is not None:
            with study_lock(storage_url, study.study_name):
                tracker.reconcile(study, grace_seconds=spec.study.grace_period)
            # Close the parent when the budget is spent or no other worker is still adding
            # trials under it (an interrupted worker leaves it to the others); a resume
            # reopens it.
            others_running = count(study, (TrialState.RUNNING,)) > 0
            if count(study, FINISHED) >= total or not others_running:
                tracker.end_parent(parent_run_id, status)
