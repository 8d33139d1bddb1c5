"""The two classification workloads every library trains on, as float32 arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIGITS_TEST_ROWS = 540  # leaves the 1,257 training rows of a 70/30 split of 1,797 images


@dataclass(frozen=True)
class Workload:
    """Data, architecture and schedule shared by every library in a comparison.

    Args:
        name: Short label for the table.
        X_train: Standardized training inputs ``(n, d)``, float32.
        y_train: Integer labels ``(n,)``.
        X_test: Test inputs ``(m, d)``, standardized with training statistics.
        y_test: Integer labels ``(m,)``.
        hidden: Hidden-layer widths (ReLU).
        batch_size: Rows per mini-batch.
        epochs: Passes over the training rows per timed run.
        learning_rate: Adam's step size.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    hidden: tuple[int, ...]
    batch_size: int
    epochs: int
    learning_rate: float = 1e-3

    @property
    def n_classes(self) -> int:
        return int(self.y_train.max()) + 1

    @property
    def widths(self) -> tuple[int, ...]:
        """Layer widths from input to output, e.g. ``(64, 128, 10)``."""
        return (self.X_train.shape[1], *self.hidden, self.n_classes)

    @property
    def architecture(self) -> str:
        return "-".join(str(width) for width in self.widths)

    def batch_sizes(self) -> list[int]:
        """Rows of each mini-batch of one epoch (the last one may be smaller)."""
        n, size = len(self.X_train), self.batch_size
        return [min(size, n - start) for start in range(0, n, size)]

    def matmul_flops_per_epoch(self) -> float:
        """Floating-point operations of the matrix products of one training epoch.

        Per batch of ``m`` rows and per layer ``(a, b)``: ``2 m a b`` for the forward product,
        as much for the weight gradient, and as much again for the input gradient of every
        layer but the first (the trainer skips that one). Bias sums are not counted.
        """
        layers = list(zip(self.widths[:-1], self.widths[1:], strict=True))
        per_row = sum(2 * a * b * (2 if i == 0 else 3) for i, (a, b) in enumerate(layers))
        return float(per_row * len(self.X_train))

    def with_epochs(self, epochs: int) -> Workload:
        """The same workload over ``epochs`` epochs (warm-up runs use one)."""
        return Workload(
            self.name,
            self.X_train,
            self.y_train,
            self.X_test,
            self.y_test,
            self.hidden,
            self.batch_size,
            epochs,
            self.learning_rate,
        )


def _standardized(
    X: np.ndarray, y: np.ndarray, test_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified split, standardized with training statistics, cast to float32."""
    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=0
    )
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std[std == 0] = 1.0  # constant pixels stay 0 after centring
    return (
        ((X_train - mean) / std).astype(np.float32),
        y_train.astype(np.int64),
        ((X_test - mean) / std).astype(np.float32),
        y_test.astype(np.int64),
    )


def digits(epochs: int) -> Workload:
    """scikit-learn's 8x8 digits: 1,257 training rows, 540 test rows, 64-128-10, batch 64."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X_train, y_train, X_test, y_test = _standardized(X, y, DIGITS_TEST_ROWS)
    return Workload("digits", X_train, y_train, X_test, y_test, (128,), 64, epochs)


def classification(n_samples: int, epochs: int) -> Workload:
    """``make_classification(n_samples, 100 features, 10 classes)``, 80/20 split,
    100-256-256-10, batch 256. Thirty informative features (ten classes need at least
    five) make a task that is neither trivial nor hopeless after a few epochs."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n_samples,
        n_features=100,
        n_informative=30,
        n_redundant=10,
        n_classes=10,
        random_state=0,
    )
    X_train, y_train, X_test, y_test = _standardized(X, y, n_samples // 5)
    name = f"{n_samples // 1000}k"
    return Workload(name, X_train, y_train, X_test, y_test, (256, 256), 256, epochs)
