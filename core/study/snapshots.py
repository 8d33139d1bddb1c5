"""Views of a study whose trial lists come from one read, for the wrappers that keep
Optuna's pruner and sampler from reading the whole study at every call
(``core.study.pruning``, ``core.study.sampling``)."""

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


class SnapshotCache:
    """One snapshot per (study, trial), renewed after ``refresh_seconds``.

    Args:
        refresh_seconds: Longest a snapshot is used within one trial.
    """

    def __init__(self, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.refresh_seconds = refresh_seconds
        self._snapshot: StudySnapshot | None = None
        self._key: tuple[int, int] | None = None
        self._taken = 0.0
        self.reads = 0  # snapshots taken, for tests and benchmarks

    def view(self, study: optuna.Study, trial: FrozenTrial) -> StudySnapshot:
        """The snapshot for ``trial``: taken at its first call, kept while it is fresh."""
        key = (id(study), trial.number)
        stale = time.monotonic() - self._taken > self.refresh_seconds
        if self._snapshot is None or key != self._key or stale:
            self._snapshot = StudySnapshot(study)
            self._key, self._taken = key, time.monotonic()
            self.reads += 1
        return self._snapshot

    def forget(self) -> None:
        """Read afresh at the next call."""
        self._snapshot = self._key = None
