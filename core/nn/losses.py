"""Data losses: softmax cross-entropy from logits, and mean squared error.

Both are means over the batch (and, for MSE, over outputs), so duplicating a batch leaves
the loss and its gradient unchanged, and the gradient is the exact derivative of the value.
"""

from __future__ import annotations

import numpy as np

PROBABILITY_EPS = 1e-12


def as_labels(y: np.ndarray) -> np.ndarray:
    """Integer class labels from integer labels ``(n,)`` or one-hot rows ``(n, k)``."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        # A column of labels, not a one-hot matrix of one class.
        return y[:, 0].astype(np.intp, copy=False)
    if y.ndim == 2:
        return np.argmax(y, axis=1)
    return y.astype(np.intp, copy=False)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax(z)_j = z_j - max(z) - log sum_k exp(z_k - max(z))``, finite for finite z."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``logits`` ``(n, k)``, shifted by the row max so exp never overflows."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows whose arg-max score is the true class.

    Args:
        scores: Logits or probabilities ``(n, k)``, or predicted labels ``(n,)``.
        y: Integer labels ``(n,)`` or one-hot rows ``(n, k)``.
    """
    predicted = scores if np.ndim(scores) == 1 else np.argmax(scores, axis=1)
    labels = as_labels(y)
    if len(labels) == 0:
        return float("nan")  # what np.mean of no rows gives
    # The count over the length: the value np.mean gives, without its per-call overhead.
    return np.count_nonzero(predicted == labels) / len(labels)


def r2_score(prediction: np.ndarray, y: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``, averaged uniformly over outputs."""
    y = y.reshape(prediction.shape).astype(np.float64)
    residual = ((y - prediction) ** 2).sum(axis=0)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    # A constant target column: perfect prediction scores 1, anything else 0 (scikit-learn's rule).
    safe_total = np.where(total > 0, total, 1.0)
    per_output = np.where(total > 0, 1.0 - residual / safe_total, (residual == 0).astype(float))
    return float(per_output.mean())


def cross_entropy_from_probabilities(
    probabilities: np.ndarray, y: np.ndarray, eps: float = PROBABILITY_EPS
) -> float:
    """``-mean log p[y]`` with probabilities clipped to ``[eps, 1]``, so ``p = 0`` costs
    ``-log(eps)`` (27.631 for the default eps) instead of infinity.

    The trainer never uses this path: it works from logits. It exists for callers that
    only hold probabilities.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = as_labels(y)
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, eps, 1.0))))


class SoftmaxCrossEntropy:
    """``L = -(1/n) sum_i log softmax(z_i)[y_i]``; ``dL/dz = (softmax(z) - onehot(y)) / n``.

    Computed from logits with log-sum-exp, so the loss is exact and finite for any finite
    logit: logits ``[1000, 0, -1000]`` with target 2 cost exactly 2000. Targets may be
    integer labels ``(n,)`` or one-hot rows ``(n, k)``.
    """

    task = "classification"

    def __init__(self) -> None:
        self._probabilities: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._rows: np.ndarray | None = None  # (n,) row indices, kept across batches
        self._ones: np.ndarray | None = None  # (k,) sums each row's classes in one BLAS call

    def forward(self, logits: np.ndarray, y: np.ndarray) -> float:
        labels = as_labels(y)
        n, k = logits.shape
        if self._rows is None or len(self._rows) != n:
            self._rows = np.arange(n)
        rows = self._rows
        # The row max, read at the arg-max: the same value as logits.max(axis=1), faster for
        # the few columns of a logit matrix.
        row_max = logits[rows, logits.argmax(axis=1)]  # (n,)
        shifted = logits - row_max[:, None]  # (n, k), row max 0
        picked = shifted[rows, labels]  # (n,) shifted logit of the true class
        exp = np.exp(shifted, out=shifted)
        if self._ones is None or self._ones.shape != (k,) or self._ones.dtype != exp.dtype:
            self._ones = np.ones(k, dtype=exp.dtype)
        total = exp @ self._ones  # (n,), in [1, k]
        exp /= total[:, None]
        # Summed in the logits' dtype: a loss that overflows it counts as divergence.
        log_total = np.log(total, out=total)
        log_total -= picked
        loss = float(log_total.sum()) / n
        self._probabilities, self._labels = exp, labels
        return loss

    def backward(self) -> np.ndarray:
        n = len(self._labels)
        grad = self._probabilities * (1.0 / n)
        grad[self._rows, self._labels] -= 1.0 / n
        return grad

    @staticmethod
    def score(output: np.ndarray, y: np.ndarray) -> float:
        return accuracy(output, y)


class MeanSquaredError:
    """``L = mean((y_hat - y)^2)`` over all ``n k`` entries; ``dL/dy_hat = 2 (y_hat - y) / (n k)``.

    No factor one half: the value is the plain mean squared error that scikit-learn's
    ``mean_squared_error`` reports, and the gradient is its exact derivative.
    """

    task = "regression"

    def __init__(self) -> None:
        self._diff: np.ndarray | None = None

    def forward(self, prediction: np.ndarray, y: np.ndarray) -> float:
        diff = prediction - y.reshape(prediction.shape)  # (n, k)
        self._diff = diff
        return float(np.mean(diff * diff))

    def backward(self) -> np.ndarray:
        return self._diff * (2.0 / self._diff.size)

    @staticmethod
    def score(output: np.ndarray, y: np.ndarray) -> float:
        return r2_score(output, y)


LOSSES = {"cross_entropy": SoftmaxCrossEntropy, "mse": MeanSquaredError}
