"""Pruning decisions every epoch without reading the whole study every epoch.

Optuna's median pruner asks the study for its completed trials at every ``should_prune``;
on a database that is one query per epoch, longer than a digits epoch takes to train.
``SnapshotPruner`` hands the pruner it wraps a view of the study whose trial list is read
once per trial and again only after ``refresh_seconds``. Completed trials never change,
so with one worker the decisions are exactly those of the bare pruner; with several, a
trial that completes elsewhere joins the comparison at the next refresh. Meant for
pruners that read the study through ``get_trials`` (median, percentile); Optuna's
hyperband builds studies of its own from the storage and gains nothing from it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Container
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

REFRESH_SECONDS = 10.0


class StudySnapshot:
    """A study whose trial lists (``get_trials``, ``trials`` and Optuna's internal
    ``_get_trials``) answer from one read; everything else is the study."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self._trials = study.get_trials(deepcopy=False)

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = self._trials if states is None else [t for t in self._trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else list(trials)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        return self.get_trials(deepcopy, states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class SnapshotPruner(optuna.pruners.BasePruner):
    """Runs ``pruner`` against a snapshot of the study's trials, taken when a new trial
    first asks and renewed every ``refresh_seconds``.

    Args:
        pruner: An Optuna pruner that reads other trials through ``study.get_trials``.
        refresh_seconds: Longest a snapshot is used within one trial.
    """

    def __init__(
        self, pruner: optuna.pruners.BasePruner, refresh_seconds: float = REFRESH_SECONDS
    ) -> None:
        self.pruner = pruner
        self.refresh_seconds = refresh_seconds
        self._snapshot: StudySnapshot | None = None
        self._key: tuple[int, int] | None = None
        self._taken = 0.0
        self.reads = 0  # snapshots taken, for tests and benchmarks

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        key = (id(study), trial.number)
        stale = time.monotonic() - self._taken > self.refresh_seconds
        if self._snapshot is None or key != self._key or stale:
            self._snapshot = StudySnapshot(study)
            self._key, self._taken = key, time.monotonic()
            self.reads += 1
        return self.pruner.prune(self._snapshot, trial)  # type: ignore[arg-type]
