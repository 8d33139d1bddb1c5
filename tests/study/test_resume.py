"""Resuming: the budget is a total, a changed spec is refused before anything is created,
and a finished trial re-runs alone to the same validation loss."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from core.study.objective import load_splits, params_from_trial, run_configuration, trial_seed
from core.study.runner import make_storage, run_study
from core.study.spec import SpecError

from .helpers import child_runs, load, parent_runs

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def test_resume_stops_at_the_total_and_a_larger_total_adds_only_the_difference(
    tmp_path, optuna_url, mlflow_uri
):
    spec = load(tmp_path, "total", study={"n_trials": 3})
    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri, n_trials=3)
    assert states(study) == {"COMPLETE": 3}

    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri)
    assert states(study) == {"COMPLETE": 3}

    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=mlflow_uri, n_trials=5)
    assert states(study) == {"COMPLETE": 5}
    assert sorted(t.number for t in study.get_trials()) == [0, 1, 2, 3, 4]

    # One parent run reused across the three invocations, one child per trial.
    parents = parent_runs(mlflow_uri, "total")
    assert len(parents) == 1
    assert parents[0].info.status == "FINISHED"
    numbers = sorted(int(r.data.tags["trial_number"]) for r in child_runs(mlflow_uri, "total"))
    assert numbers == [0, 1, 2, 3, 4]


def test_resuming_with_one_more_regularizer_is_refused_and_creates_no_trial(
    tmp_path, optuna_url, mlflow_uri
):
    name = "extend"
    first = load(tmp_path, name, study={"n_trials": 2}, search={"regularizers": ["none", "l2"]})
    run_study(first, storage_url=optuna_url, tracking_uri=mlflow_uri)
    storage = make_storage(optuna_url, first)
    before = [
        (t.number, t.state)
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    ]
    assert [s for _, s in before] == [TrialState.COMPLETE] * 2

    extended = {"regularizers": ["none", "l2", "l1"]}
    changed = load(tmp_path, name, study={"n_trials": 2}, search=extended)
    with pytest.raises(SpecError, match=r"search\.regularizers.*new \[study\] name") as info:
        run_study(changed, storage_url=optuna_url, tracking_uri=mlflow_uri, n_trials=4)
    assert f"'{name}-2'" in str(info.value)
    assert "\n" not in str(info.value)

    after = [
        (t.number, t.state)
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    ]
    assert after == before
    assert len(child_runs(mlflow_uri, name)) == 2


def test_a_finished_trial_re_run_alone_from_its_parameters_gives_the_same_loss_bit_for_bit(
    tmp_path, optuna_url
):
    spec = load(
        tmp_path,
        "repro",
        study={"n_trials": 4},
        train={"max_epochs": 6},
        search={
            "regularizers": ["none", "l1", "elastic_net", "weight_decay", "dropout"],
            "patience": [2, 4],
        },
    )
    (study,) = run_study(spec, storage_url=optuna_url, tracking_uri=None)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(complete) == 4
    splits = load_splits(spec)
    for trial in complete:
        params = params_from_trial(spec, trial)
        assert params.regularizer == trial.params["regularizer"]
        seed = trial_seed(spec.study.seed, trial.number)
        assert seed == trial.user_attrs["seed"]
        outcome = run_configuration(spec, splits, params, seed)
        assert outcome.result.best_val_loss == trial.value
        assert outcome.result.epochs_run == len(trial.intermediate_values)
        assert outcome.result.history["val_loss"] == [
            trial.intermediate_values[step] for step in range(outcome.result.epochs_run)
        ]
