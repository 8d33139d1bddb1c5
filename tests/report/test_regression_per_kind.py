"""A per_kind study on a regression dataset: arms compared on R2, no class metrics."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient
from scipy import stats
from sklearn.metrics import r2_score

from core.study.objective import load_splits

from .helpers import load_study, raw_reevaluation_runs, read_table

ARMS = ("none", "l2", "dropout")


def test_per_kind_report_has_one_group_per_arm_study(regression_study, regression_report):
    kinds = read_table(regression_report.out, "kinds").set_index("kind")
    assert list(kinds.index) == list(ARMS)
    name = regression_study.spec.study.name
    for arm in ARMS:
        study = load_study(regression_study.spec, regression_study.storage_url, f"{name}/{arm}")
        complete = [t for t in study.get_trials(deepcopy=False) if t.value is not None]
        assert kinds.loc[arm, "trials"] == len(study.get_trials(deepcopy=False))
        assert kinds.loc[arm, "best_val_loss"] == min(t.value for t in complete)
        assert kinds.loc[arm, "best_trial"].startswith(f"{name}/{arm}#")
    summary = read_table(regression_report.out, "summary").set_index("field")["value"]
    assert summary["mode"] == "per_kind"
    assert summary["Optuna studies"] == ", ".join(f"{name}/{arm}" for arm in ARMS)


def test_regression_report_scores_r2_against_the_training_mean(
    regression_study, regression_report
):
    out = regression_report.out
    assert not (out / "metrics_beyond_accuracy.csv").exists()
    splits = load_splits(regression_study.spec)
    baseline = read_table(out, "baselines").iloc[0]
    y_train = splits.y_train.astype(np.float64).ravel()
    y_test = splits.y_test.astype(np.float64).ravel()
    predicted = np.full(len(y_test), y_train.mean())
    assert baseline["r2"] == pytest.approx(r2_score(y_test, predicted), rel=1e-12)
    runs = raw_reevaluation_runs(regression_study.tracking_uri, regression_study.spec.study.name)
    runs = runs[runs["parent"] == regression_report.result.reevaluation_parent_run_id]
    summary = read_table(out, "reevaluation_summary").set_index("kind")
    for kind, group in runs.groupby("kind"):
        values = group["test_accuracy"].to_numpy()  # R2 under the objective's metric name
        low, high = stats.t.interval(0.95, 2, loc=values.mean(), scale=stats.sem(values))
        assert summary.loc[kind, "test_accuracy.mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert summary.loc[kind, "test_accuracy.ci_low"] == pytest.approx(low, rel=1e-12)
        assert summary.loc[kind, "test_accuracy.ci_high"] == pytest.approx(high, rel=1e-12)
        assert "test_balanced_accuracy.mean" not in summary
    comparisons = read_table(out, "comparisons")
    assert set(comparisons["reference"]) <= set(ARMS) and len(comparisons) >= 2
    assert all("test R2" in verdict for verdict in comparisons["verdict"])


def test_per_kind_report_is_logged_to_the_reevaluation_parent(regression_study, regression_report):
    result = regression_report.result
    assert result.logged_run_id == result.reevaluation_parent_run_id
    client = MlflowClient(regression_study.tracking_uri)
    names = {a.path for a in client.list_artifacts(result.logged_run_id, "report")}
    assert "report/report.html" in names
    assert "l2_vs_weight_decay" not in result.figures
    for path in result.figures.values():
        assert path.stat().st_size > 1000
