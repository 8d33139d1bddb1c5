"""A TPE sampler that reads the study once per trial.

With ``constant_liar`` (which the workers of a shared study need, so they do not all try
the same point), Optuna's TPE sampler reads every trial of the study from the storage at
each parameter it samples, and once more for the search space: on a database, about five
reads per trial of ``studies/digits.toml``, each longer than an epoch. ``SnapshotSampler``
hands the sampler it wraps a view of the study whose trial lists come from one read, taken
when a trial first asks. A trial samples all its parameters within milliseconds, before
it trains, so the view is as fresh as the reads it replaces; with one worker the samples
are exactly those of the bare sampler (tested).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from core.study.snapshots import REFRESH_SECONDS, SnapshotCache


class SnapshotSampler(optuna.samplers.BaseSampler):
    """Runs ``sampler`` against one snapshot of the study's trials per trial.

    Args:
        sampler: An Optuna sampler that reads other trials through the study.
        refresh_seconds: Longest a snapshot is used within one trial.
    """

    def __init__(
        self, sampler: optuna.samplers.BaseSampler, refresh_seconds: float = REFRESH_SECONDS
    ) -> None:
        self.sampler = sampler
        self._snapshots = SnapshotCache(refresh_seconds)

    @property
    def reads(self) -> int:
        """Snapshots taken, for tests and benchmarks."""
        return self._snapshots.reads

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        view = self._snapshots.view(study, trial)
        return self.sampler.infer_relative_search_space(view, trial)  # type: ignore[arg-type]

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        view = self._snapshots.view(study, trial)
        return self.sampler.sample_relative(view, trial, search_space)  # type: ignore[arg-type]

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        view = self._snapshots.view(study, trial)
        return self.sampler.sample_independent(
            view,  # type: ignore[arg-type]
            trial,
            param_name,
            param_distribution,
        )

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.sampler.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: list[float] | None,
    ) -> None:
        self._snapshots.forget()  # the next trial reads afresh
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()
