"""Metrics beyond accuracy, and the trivial predictors every model must beat.

Accuracy alone flatters a model on imbalanced data: always predicting the majority class
of a 95/5 split scores 0.95. Balanced accuracy (mean recall over the classes) and macro-F1
(mean F1 over the classes) give such a predictor 0.5 and about 0.49, so the report shows
them next to accuracy, together with the majority-class predictor itself.
"""

from __future__ import annotations

import numpy as np

IMBALANCE_THRESHOLD = 0.8


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro-F1 and the recall of every class.

    Balanced accuracy is the mean recall over the classes present in ``y_true``. Macro-F1 is
    the mean F1 over the classes present in ``y_true`` or ``y_pred``, where a class that is
    never predicted correctly has F1 = 0 (including when its precision is undefined).

    Args:
        y_true: True labels, shape ``(n,)``.
        y_pred: Predicted labels, shape ``(n,)``.

    Returns:
        ``accuracy``, ``balanced_accuracy``, ``macro_f1`` and ``recall[<label>]`` for each
        label present in ``y_true``.

    Raises:
        ValueError: The arrays are empty or of different lengths.
    """
    truth = np.asarray(y_true).ravel()
    predicted = np.asarray(y_pred).ravel()
    if truth.size == 0 or truth.size != predicted.size:
        raise ValueError(
            "y_true and y_pred must be non-empty and of equal length; got "
            f"{truth.size} and {predicted.size}"
        )
    present = np.unique(truth)
    labels = np.union1d(present, np.unique(predicted))
    recalls: dict[str, float] = {}
    f1_scores = []
    for label in labels:
        hits = float(np.sum((truth == label) & (predicted == label)))
        actual = float(np.sum(truth == label))
        claimed = float(np.sum(predicted == label))
        # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (actual + claimed): 0 when TP = 0.
        f1_scores.append(2.0 * hits / (actual + claimed) if hits else 0.0)
        if actual:
            recalls[f"recall[{label}]"] = hits / actual
    return {
        "accuracy": float(np.mean(truth == predicted)),
        "balanced_accuracy": float(np.mean(list(recalls.values()))),
        "macro_f1": float(np.mean(f1_scores)),
        **recalls,
    }


def majority_label(y_train: np.ndarray) -> int:
    """The most common training label (the smallest one on a tie)."""
    labels, counts = np.unique(np.asarray(y_train).ravel(), return_counts=True)
    return int(labels[np.argmax(counts)])


def majority_class_baseline(y_train: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """Metrics of always predicting the majority class of ``y_train``, scored on ``y_test``.

    Returns:
        :func:`classification_metrics` of that predictor plus ``label``, the class it
        predicts.
    """
    label = majority_label(y_train)
    test = np.asarray(y_test).ravel()
    metrics = classification_metrics(test, np.full(test.shape, label))
    return {"label": float(label), **metrics}


def mean_predictor_r2(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """R2 on ``y_test`` of always predicting the mean of ``y_train`` (0 minus a little).

    ``R2 = 1 - sum((y - mean_train)^2) / sum((y - mean_test)^2)``.
    """
    train = np.asarray(y_train, dtype=np.float64).ravel()
    test = np.asarray(y_test, dtype=np.float64).ravel()
    residual = float(np.sum((test - train.mean()) ** 2))
    total = float(np.sum((test - test.mean()) ** 2))
    return 1.0 - residual / total if total > 0 else float("nan")


def imbalance_caveat(metric: str, majority_fraction: float) -> str | None:
    """A warning when plain accuracy is optimized on data dominated by one class.

    Args:
        metric: The study's objective metric (``val_loss`` or ``val_accuracy``).
        majority_fraction: Fraction of rows in the most common class
            (``core.data.class_balance``).

    Returns:
        The warning sentence, or None when the metric is not accuracy or the majority
        class holds at most 80% of the rows.
    """
    if metric != "val_accuracy" or majority_fraction <= IMBALANCE_THRESHOLD:
        return None
    return (
        f"The search optimized plain accuracy (val_accuracy) on data whose majority class "
        f"holds {majority_fraction:.1%} of the rows: always predicting that class already "
        f"scores {majority_fraction:.4f}. Judge kinds by balanced accuracy and macro-F1, "
        "or search on val_loss."
    )
