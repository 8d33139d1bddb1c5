"""The conditional search space: each regularizer kind samples only its own parameters,
under names of its own, inside the declared ranges, with any sampler (B14)."""

from __future__ import annotations

import math

import optuna
import pytest

from core.study.runner import make_sampler
from core.study.space import STRENGTH_PARAM, suggest

from .helpers import load

KINDS = ["none", "l1", "l2", "dropout", "weight_decay"]
RANGES = {
    "learning_rate": [1e-4, 1e-1],
    "l1_strength": [1e-6, 1e-2],
    "l2_strength": [1e-5, 1e-1],
    "weight_decay_strength": [1e-4, 1e-1],
    "dropout_rate": [0.05, 0.6],
    "patience": [2, 9],
}


@pytest.fixture
def joint_spec(tmp_path):
    return load(
        tmp_path,
        "space",
        study={"n_trials": 40, "mode": "joint"},
        search={"regularizers": KINDS, **RANGES},
    )


def expected_keys(kind: str) -> set[str]:
    keys = {"learning_rate", "regularizer", "patience"}
    if kind in STRENGTH_PARAM:
        keys.add(STRENGTH_PARAM[kind])
    if kind == "dropout":
        keys.add("dropout_rate")
    return keys


def ask_and_tell(study: optuna.Study, spec, n: int) -> list[tuple[optuna.Trial, object]]:
    sampled = []
    for _ in range(n):
        trial = study.ask()
        params = suggest(trial, spec)
        # A fake objective that depends on what was sampled, so TPE has something to model.
        value = math.log10(params.learning_rate) ** 2 + params.strength + params.dropout_rate
        study.tell(trial, value)
        sampled.append((trial, params))
    return sampled


def check_trials(study: optuna.Study, sampled) -> None:
    frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
    kinds_seen = set()
    for trial, params in sampled:
        stored = frozen[trial.number]
        kind = params.regularizer
        kinds_seen.add(kind)
        assert stored.state == optuna.trial.TrialState.COMPLETE
        assert set(stored.params) == expected_keys(kind), (kind, stored.params)
        assert stored.params["regularizer"] == kind
        low, high = RANGES["learning_rate"]
        assert low <= params.learning_rate <= high
        if kind in STRENGTH_PARAM:
            low, high = RANGES[STRENGTH_PARAM[kind]]
            assert low <= params.strength <= high
            assert params.strength == stored.params[STRENGTH_PARAM[kind]]
        else:
            assert params.strength == 0.0
        if kind == "dropout":
            low, high = RANGES["dropout_rate"]
            assert low <= params.dropout_rate <= high
        else:
            assert params.dropout_rate == 0.0
        assert RANGES["patience"][0] <= params.patience <= RANGES["patience"][1]
    # 40 trials over 5 kinds: every kind was tried at least once.
    assert kinds_seen == set(KINDS)


def test_tpe_seed_0_over_40_joint_trials_samples_only_the_keys_each_kind_needs(joint_spec):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    sampled = ask_and_tell(study, joint_spec, 40)
    check_trials(study, sampled)


def test_the_study_tpe_configuration_samples_only_the_keys_each_kind_needs(joint_spec):
    # The sampler the runner really builds: multivariate, grouped, constant liar.
    study = optuna.create_study(sampler=make_sampler(joint_spec, None, seed=0))
    sampled = ask_and_tell(study, joint_spec, 40)
    check_trials(study, sampled)


def test_random_sampler_samples_only_the_keys_each_kind_needs(joint_spec):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampled = ask_and_tell(study, joint_spec, 40)
    check_trials(study, sampled)


def test_dropout_is_searched_alongside_every_kind_when_it_is_not_a_kind_of_its_own(tmp_path):
    spec = load(
        tmp_path,
        "alongside",
        search={"regularizers": ["none", "l1", "l2"], "dropout_rate": [0.1, 0.4]},
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(12):
        trial = study.ask()
        params = suggest(trial, spec)
        assert "dropout_rate" in trial.params
        assert 0.1 <= params.dropout_rate <= 0.4
        study.tell(trial, 0.0)


def test_a_pinned_linear_range_is_used_without_being_searched(tmp_path):
    spec = load(
        tmp_path,
        "pinned",
        search={"regularizers": ["none"], "dropout_rate": [0.25, 0.25], "patience": [4, 4]},
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = suggest(trial, spec)
    assert set(trial.params) == {"learning_rate"}
    assert params.dropout_rate == 0.25
    assert params.patience == 4
