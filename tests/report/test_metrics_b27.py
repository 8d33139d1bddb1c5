"""Case B27: a model that always predicts the majority class looks good on accuracy only."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from core.data import class_balance
from core.report import (
    classification_metrics,
    imbalance_caveat,
    majority_class_baseline,
    mean_predictor_r2,
)

MALIGNANT, BENIGN = 0, 1


class AlwaysBenign:
    """A stub model: predicts benign for every row."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), BENIGN)


@pytest.fixture(scope="module")
def reduced() -> tuple[np.ndarray, np.ndarray]:
    """Breast cancer reduced to all 357 benign rows and the first 20 malignant rows."""
    X, y = load_breast_cancer(return_X_y=True)
    benign = np.flatnonzero(y == BENIGN)
    malignant = np.flatnonzero(y == MALIGNANT)[:20]
    rows = np.sort(np.concatenate([benign, malignant]))
    return X[rows], y[rows]


def test_b27_always_benign_scores_high_accuracy_but_half_balanced_accuracy(reduced):
    X, y = reduced
    assert len(y) == 377 and int(np.sum(y == BENIGN)) == 357
    metrics = classification_metrics(y, AlwaysBenign().predict(X))
    assert round(metrics["accuracy"], 4) == 0.9469
    assert metrics["accuracy"] == 357 / 377
    assert metrics["balanced_accuracy"] == 0.5
    assert round(metrics["macro_f1"], 4) == 0.4864
    assert metrics[f"recall[{MALIGNANT}]"] == 0.0
    assert metrics[f"recall[{BENIGN}]"] == 1.0


def test_b27_metrics_equal_scikit_learn(reduced):
    X, y = reduced
    predicted = AlwaysBenign().predict(X)
    metrics = classification_metrics(y, predicted)
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(y, predicted, average="macro", zero_division=0)
    )
    recalls = recall_score(y, predicted, average=None, zero_division=0)
    assert [metrics[f"recall[{label}]"] for label in (0, 1)] == pytest.approx(recalls)


def test_b27_majority_class_baseline_is_the_always_benign_model(reduced):
    _, y = reduced
    baseline = majority_class_baseline(y, y)
    assert baseline["label"] == BENIGN
    assert round(baseline["accuracy"], 4) == 0.9469
    assert baseline["balanced_accuracy"] == 0.5
    assert round(baseline["macro_f1"], 4) == 0.4864


def test_b27_accuracy_objective_on_imbalanced_data_warns(reduced):
    _, y = reduced
    assert class_balance(y) > 0.8
    warning = imbalance_caveat("val_accuracy", class_balance(y))
    assert warning is not None and "94.7%" in warning and "balanced accuracy" in warning
    assert imbalance_caveat("val_loss", class_balance(y)) is None
    assert imbalance_caveat("val_accuracy", 0.627) is None


def test_classification_metrics_on_several_classes_equal_scikit_learn():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, size=200)
    predicted = np.where(rng.random(200) < 0.6, truth, rng.integers(0, 4, size=200))
    metrics = classification_metrics(truth, predicted)
    assert metrics["accuracy"] == pytest.approx(np.mean(truth == predicted))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, predicted))
    assert metrics["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_classification_metrics_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match="equal length; got 3 and 2"):
        classification_metrics(np.array([0, 1, 1]), np.array([0, 1]))


def test_mean_predictor_r2_is_near_zero_and_never_positive_on_its_own_data():
    y = np.random.default_rng(1).normal(size=50)
    assert mean_predictor_r2(y, y) == pytest.approx(0.0, abs=1e-12)
    assert mean_predictor_r2(y[:25], y[25:]) <= 0.0
