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

import optuna
from optuna.trial import FrozenTrial

from core.study.snapshots import REFRESH_SECONDS, SnapshotCache


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
        self._snapshots = SnapshotCache(refresh_seconds)

    @property
    def reads(self) -> int:
        """Snapshots taken, for tests and benchmarks."""
        return self._snapshots.reads

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        view = self._snapshots.view(study, trial)
        return self.pruner.prune(view, trial)  # type: ignore[arg-type]
