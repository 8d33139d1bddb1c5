"""Every statistic of the report's tables, recomputed here from the raw stores and scipy.

Nothing below calls ``core.report``'s statistics: the numbers come straight from MLflow
(``search_runs``, ``get_run``) and Optuna, and the statistics from scipy and scikit-learn.
The CSV files are written with 17 significant digits, so they must agree to rounding.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from scipy import stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from core.study.objective import load_splits

from .helpers import holm_by_definition, load_study, raw_reevaluation_runs, read_table

REL = 1e-12
KEYS = ("test_accuracy", "gap_test", "gap_val_test", "test_balanced_accuracy", "test_macro_f1")
ORDER = ("none", "l2", "weight_decay")  # the kinds of the joint study, baseline first


@pytest.fixture(scope="module")
def raw(joint_study, joint_report):
    """The re-evaluation runs of the report's seeds under its parent, from MLflow."""
    summary = read_table(joint_report.out, "summary").set_index("field")["value"]
    seeds = [int(s) for s in summary["re-evaluation seeds"].split(":", 1)[1].split(",")]
    frame = raw_reevaluation_runs(joint_study.tracking_uri, joint_study.spec.study.name)
    frame = frame[frame["parent"] == joint_report.result.reevaluation_parent_run_id]
    return frame[frame["seed"].isin(seeds)], seeds


def interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    sem = stats.sem(values)
    if sem == 0:
        return values.mean(), values.mean()
    return stats.t.interval(confidence, len(values) - 1, loc=values.mean(), scale=sem)


def test_reevaluation_summary_equals_scipy_on_raw_runs(raw, joint_report):
    runs, seeds = raw
    table = read_table(joint_report.out, "reevaluation_summary").set_index("kind")
    assert list(table.index) == list(ORDER)
    for kind, group in runs.groupby("kind"):
        row = table.loc[kind]
        assert row["n_seeds"] == len(group) == len(seeds) == 3
        assert set(row["run_ids"].split(";")) == set(group["run_id"])
        for key in KEYS:
            values = group[key].to_numpy()
            assert row[f"{key}.mean"] == pytest.approx(values.mean(), rel=REL, abs=1e-15)
            assert row[f"{key}.sd"] == pytest.approx(np.std(values, ddof=1), rel=REL, abs=1e-15)
            low, high = interval(values, 0.95)
            assert row[f"{key}.ci_low"] == pytest.approx(low, rel=REL, abs=1e-14)
            assert row[f"{key}.ci_high"] == pytest.approx(high, rel=REL, abs=1e-14)


def test_per_seed_table_is_the_raw_runs(raw, joint_report):
    runs, _ = raw
    table = read_table(joint_report.out, "reevaluation_runs").set_index("run_id")
    assert set(table.index) == set(runs["run_id"])
    for _, run in runs.iterrows():
        row = table.loc[run["run_id"]]
        assert (row["kind"], row["seed"]) == (run["kind"], run["seed"])
        for key in (*KEYS, "best_val_loss"):
            assert row[key] == run[key]


def test_best_kind_is_the_best_mean_validation_loss(raw, joint_report):
    runs, _ = raw
    means = runs.groupby("kind")["best_val_loss"].mean()
    assert joint_report.result.best_kind == means.idxmin()


def test_comparisons_equal_scipy_paired_tests_with_holm(raw, joint_report):
    runs, _ = raw
    best = joint_report.result.best_kind
    scores = runs.pivot(index="seed", columns="kind", values="test_accuracy")
    table = read_table(joint_report.out, "comparisons")
    expected = {(k, "none") for k in ORDER if k != "none"}
    expected |= {(k, best) for k in ORDER if k not in (best, "none")}
    assert set(zip(table["kind"], table["reference"], strict=True)) == expected
    for _, row in table.iterrows():
        x, y = scores[row["kind"]].to_numpy(), scores[row["reference"]].to_numpy()
        diffs = x - y
        assert row["n_pairs"] == len(diffs) == 3
        assert row["mean_diff"] == pytest.approx(diffs.mean(), rel=REL, abs=1e-15)
        low, high = interval(diffs, 0.95)
        assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx(
            (low, high), rel=REL, abs=1e-14
        )
        if np.std(diffs) == 0:
            assert math.isnan(row["p_t"]) or row["p_t"] == 0.0
            continue
        reference = stats.ttest_rel(x, y)
        assert row["t"] == pytest.approx(reference.statistic, rel=1e-10)
        assert row["p_t"] == pytest.approx(reference.pvalue, rel=1e-10)
        assert row["cohen_dz"] == pytest.approx(diffs.mean() / np.std(diffs, ddof=1), rel=REL)
        rounded = np.round(diffs, 12)
        if np.any(rounded != 0):
            exact = stats.wilcoxon(rounded, method=stats.PermutationMethod(n_resamples=10**6))
            assert row["wilcoxon_w"] == pytest.approx(exact.statistic)
            assert row["p_wilcoxon"] == pytest.approx(exact.pvalue, rel=REL)
            assert row["p_wilcoxon_min"] == pytest.approx(2 / 2 ** np.count_nonzero(rounded))
    finite = table[table["p_t"].notna()]
    assert list(finite["p_holm"]) == pytest.approx(holm_by_definition(list(finite["p_t"])))
    assert list(table["significant"]) == list(table["p_holm"] < 0.05)
    for _, row in table.iterrows():
        if not row["significant"]:
            assert "no significant difference" in row["verdict"]


def test_kind_table_equals_optuna_and_the_best_trials_runs(joint_study, joint_report):
    study = load_study(joint_study.spec, joint_study.storage_url)
    table = read_table(joint_report.out, "kinds").set_index("kind")
    client = MlflowClient(joint_study.tracking_uri)
    trials = study.get_trials(deepcopy=False)
    for kind in ORDER:
        mine = [t for t in trials if t.user_attrs.get("regularizer") == kind]
        complete = [t for t in mine if t.state == TrialState.COMPLETE]
        best = min(complete, key=lambda t: (t.value, t.number))
        row = table.loc[kind]
        assert row["trials"] == len(mine)
        assert row["complete"] == len(complete)
        assert row["failed"] == sum(t.state == TrialState.FAIL for t in mine)
        assert row["best_val_loss"] == best.value
        assert row["best_trial"] == f"{study.study_name}#{best.number}"
        assert row["run_id"] == best.user_attrs["mlflow_run_id"]
        metrics = client.get_run(row["run_id"]).data.metrics
        assert row["best_epoch"] == metrics["best_epoch"] == best.user_attrs["best_epoch"]
        assert row["epochs_to_best"] == metrics["best_epoch"] + 1
        assert row["epochs_run"] == metrics["epochs_run"]
        assert f"learning_rate={best.params['learning_rate']:.3g}" in row["parameters"]


def test_finished_trials_table_equals_mlflow_runs(joint_study, joint_report):
    client = MlflowClient(joint_study.tracking_uri)
    table = read_table(joint_report.out, "trials")
    for _, row in table[table["state"] == "COMPLETE"].iterrows():
        metrics = client.get_run(row["run_id"]).data.metrics
        assert row["test_accuracy"] == metrics["test_accuracy"]
        assert row["gap_test"] == metrics["gap_test"]
        assert row["value"] == metrics["best_val_loss"]


def test_majority_class_row_equals_scikit_learn(joint_study, joint_report):
    splits = load_splits(joint_study.spec)
    labels, counts = np.unique(splits.y_train, return_counts=True)
    predicted = np.full(len(splits.y_test), labels[np.argmax(counts)])
    table = read_table(joint_report.out, "metrics_beyond_accuracy")
    row = table[table["predictor"].str.startswith("majority class")].iloc[0]
    assert row["test_accuracy.mean"] == accuracy_score(splits.y_test, predicted)
    assert row["test_balanced_accuracy.mean"] == pytest.approx(
        balanced_accuracy_score(splits.y_test, predicted), rel=REL
    )
    assert row["test_macro_f1.mean"] == pytest.approx(
        f1_score(splits.y_test, predicted, average="macro", zero_division=0), rel=REL
    )


def test_state_counts_and_importance_equal_optuna(joint_study, joint_report):
    study = load_study(joint_study.spec, joint_study.storage_url)
    states = read_table(joint_report.out, "trial_states").iloc[0]
    for state, column in [
        ("COMPLETE", "complete"),
        ("PRUNED", "pruned"),
        ("FAIL", "failed"),
        ("RUNNING", "running"),
    ]:
        assert states[column] == len(study.get_trials(states=(TrialState[state],)))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=joint_study.spec.study.seed)
    expected = optuna.importance.get_param_importances(study, evaluator=evaluator)
    table = read_table(joint_report.out, "importance")
    assert dict(zip(table["param"], table["importance"], strict=True)) == pytest.approx(expected)
