"""SnapshotSampler samples exactly what the TPE sampler it wraps samples, over the study's
real search space, with one read of the study per trial instead of one per parameter."""

from __future__ import annotations

import math
import warnings

import optuna
import pytest

from core.study.runner import make_sampler
from core.study.sampling import SnapshotSampler
from core.study.space import suggest

from .helpers import CountingStorage, load

KINDS = ["none", "l1", "l2", "dropout", "weight_decay"]


@pytest.fixture
def spec(tmp_path):
    return load(
        tmp_path,
        "sampling",
        study={"n_trials": 40, "mode": "joint"},
        search={"regularizers": KINDS, "dropout_rate": [0.05, 0.6], "patience": [2, 9]},
    )


def _value(params) -> float:
    return math.log10(params.learning_rate) ** 2 + params.strength + params.dropout_rate


def _run(sampler, spec, *, pruner=None, pairs: bool) -> tuple[list, int]:
    """40 trials; with ``pairs``, two are asked before either is told, as two workers do,
    so constant liar has running trials to lie about."""
    storage = CountingStorage()
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner)
    for _ in range(20 if pairs else 40):
        trials = [study.ask() for _ in range(2 if pairs else 1)]
        values = [_value(suggest(trial, spec)) for trial in trials]
        for trial, value in zip(trials, values, strict=True):
            study.tell(trial, value)
    return [(t.params, t.value) for t in study.trials], storage.reads


def _bare(spec) -> optuna.samplers.TPESampler:
    wrapped = make_sampler(spec, None, seed=5)
    assert isinstance(wrapped, SnapshotSampler)
    tpe = wrapped.sampler
    # A twin of the runner's TPE, unwrapped: same settings, same seed.
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    return optuna.samplers.TPESampler(
        seed=5,
        multivariate=tpe._multivariate,
        group=tpe._group,
        constant_liar=tpe._constant_liar,
        n_startup_trials=tpe._n_startup_trials,
    )


@pytest.mark.parametrize("pairs", [False, True], ids=["one-worker", "two-running"])
def test_the_wrapped_tpe_samples_what_the_bare_one_does_with_fewer_reads(spec, pairs):
    bare, bare_reads = _run(_bare(spec), spec, pairs=pairs)
    wrapper = make_sampler(spec, None, seed=5)
    wrapped, reads = _run(wrapper, spec, pairs=pairs)
    assert wrapped == bare
    assert len({params["regularizer"] for params, _ in bare}) == len(KINDS)
    assert wrapper.reads == 40  # one snapshot per trial
    # The bare sampler reads the study once per sampled parameter and once for the search
    # space; the wrapped one once per trial, beside Optuna's own reads (tell, ask).
    assert reads < bare_reads / 2, (reads, bare_reads)


def test_hyperband_brackets_reach_the_wrapped_sampler_unchanged(spec):
    def pruner():
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9)

    bare, _ = _run(_bare(spec), spec, pruner=pruner(), pairs=False)
    wrapped, _ = _run(make_sampler(spec, None, seed=5), spec, pruner=pruner(), pairs=False)
    assert wrapped == bare
