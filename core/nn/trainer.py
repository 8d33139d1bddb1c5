"""The fit loop: mini-batches, penalties, augmentation, evaluation, early stopping, history.

An epoch is: shuffle; batches (augment, forward, loss plus penalty, backward, update);
evaluate in evaluation mode; record; check stopping. Randomness comes only from the
``numpy.random.Generator`` built from ``TrainConfig.seed``: shuffling, dropout masks and
augmentation draw from it, evaluation never does.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.nn.losses import LOSSES, as_labels
from core.nn.model import MLP
from core.nn.optimizers import OPTIMIZERS, make_optimizer
from core.nn.penalties import Penalty

logger = logging.getLogger(__name__)

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
EpochCallback = Callable[[int, dict[str, float]], None]

HISTORY_KEYS = (
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "penalty",
    "gap_loss",
    "train_objective",
    "epoch_seconds",
)


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss; names the epoch and the learning rate."""

    def __init__(self, *, epoch: int, learning_rate: float, what: str = "training loss") -> None:
        self.epoch = epoch
        self.learning_rate = learning_rate
        self.what = what
        super().__init__(
            f"{what} became non-finite at epoch {epoch} with learning_rate={learning_rate:g}; "
            "lower the learning rate or the regularization strength"
        )


@dataclass(frozen=True)
class TrainConfig:
    """Everything about how to fit, validated on construction.

    Args:
        max_epochs: Upper bound on passes over the training data.
        batch_size: Rows per mini-batch (the last batch of an epoch may be smaller).
        optimizer: ``sgd``, ``momentum`` or ``adam``.
        learning_rate: Step size.
        momentum: Coefficient for the ``momentum`` optimizer.
        penalty: Weight penalty added to the loss and its gradient.
        weight_decay: Decoupled weight decay applied in the update step (not a penalty).
        patience: Epochs without a ``min_delta`` improvement of validation loss before
            stopping; None disables early stopping and keeps the final weights.
        min_delta: Smallest decrease of validation loss that counts as an improvement.
        seed: Seed of the training stream (shuffling, dropout, augmentation).
        evaluate_train: Compute train metrics in evaluation mode every epoch (needed for
            the generalization gap; off only for speed measurements).
    """

    max_epochs: int = 100
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    penalty: Penalty = field(default_factory=Penalty)
    weight_decay: float = 0.0
    patience: int | None = None
    min_delta: float = 0.0
    seed: int | np.random.SeedSequence = 0
    evaluate_train: bool = True

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1; got {self.max_epochs!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {self.batch_size!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}"
            )
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None; got {self.patience!r}")
        if not (np.isfinite(self.min_delta) and self.min_delta >= 0):
            raise ValueError(f"min_delta must be a finite number >= 0; got {self.min_delta!r}")


@dataclass
class TrainResult:
    """What ``train`` returns; the model itself holds the returned weights.

    ``best_epoch`` is the epoch whose weights the model holds: the best validation loss
    when early stopping is on (restored whether or not it fired), else the last epoch.
    """

    history: dict[str, list[float]]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    best_val_loss: float
    best_val_accuracy: float


class _EarlyStopping:
    """Tracks the best validation loss and a copy of the weights that achieved it."""

    def __init__(self, patience: int | None, min_delta: float) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best_loss = np.inf
        self.best_epoch = -1
        self.best_state: list[np.ndarray] | None = None
        self.waited = 0

    def update(self, epoch: int, val_loss: float, model: MLP) -> bool:
        """Record this epoch; return True when training should stop."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.waited = val_loss, epoch, 0
            if self.patience is not None:
                self.best_state = model.get_state()
            return False
        self.waited += 1
        return self.patience is not None and self.waited >= self.patience


def evaluate(model: MLP, loss_name: str, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Data loss (no penalty) and accuracy or R2 of ``model`` in evaluation mode."""
    loss = LOSSES[loss_name]()
    output = model.predict_output(X)
    return loss.forward(output, y), loss.score(output, y)


def train(
    model: MLP,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    *,
    loss: str = "cross_entropy",
    augment: Augment | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Fit ``model`` in place and return its history.

    Args:
        model: The network to train; on return it holds the weights of ``best_epoch``.
        X_train: Training inputs ``(n, d)``.
        y_train: Integer labels ``(n,)`` or one-hot ``(n, k)`` for cross-entropy, targets
            ``(n, k)`` for MSE.
        X_val: Validation inputs; the only data early stopping looks at.
        y_val: Validation targets.
        config: Optimizer, penalty, stopping and seed.
        loss: ``cross_entropy`` or ``mse``.
        augment: Applied to each training batch only, with the training generator.
        on_epoch: Called after each epoch with ``(epoch, record)``; it may raise to stop
            training (the exception propagates, e.g. a pruning signal).

    Raises:
        DivergenceError: A training or validation loss is not finite.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    X_train = np.asarray(X_train, dtype=model.dtype)
    X_val = np.asarray(X_val, dtype=model.dtype)
    # Plain arrays: a pandas Series would be indexed by label, not by position, below.
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    _check_data(model, loss, X_train, y_train, "train")
    _check_data(model, loss, X_val, y_val, "validation")
    if loss == "mse":
        y_train = np.asarray(y_train, dtype=model.dtype).reshape(len(X_train), -1)
        y_val = np.asarray(y_val, dtype=model.dtype).reshape(len(X_val), -1)
    else:
        # Integer labels once, so no batch converts (or takes the arg-max of one-hot rows).
        y_train, y_val = as_labels(y_train), as_labels(y_val)

    rng = np.random.default_rng(config.seed)
    loss_fn = LOSSES[loss]()
    optimizer = make_optimizer(
        config.optimizer,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
    )
    stopper = _EarlyStopping(config.patience, config.min_delta)
    evaluator = EpochEvaluator(loss, X_train, y_train, X_val, y_val, config.evaluate_train)
    history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
    stopped_early = False
    epoch = -1
    # Overflow is detected below as a non-finite loss and reported as DivergenceError.
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(config.max_epochs):
            started = time.perf_counter()
            objective = _run_epoch(
                model, loss_fn, optimizer, X_train, y_train, config, rng, augment, epoch
            )
            record = _epoch_record(model, evaluator, config, epoch)
            record["train_objective"] = objective + record["penalty"]
            record["epoch_seconds"] = time.perf_counter() - started
            for key in HISTORY_KEYS:
                history[key].append(record[key])
            stop = stopper.update(epoch, record["val_loss"], model)
            if on_epoch is not None:
                on_epoch(epoch, record)
            if stop:
                stopped_early = True
                logger.debug("early stopping at epoch %d (best %d)", epoch, stopper.best_epoch)
                break

    model.clear_cache()
    if config.patience is not None and stopper.best_state is not None:
        model.set_state(stopper.best_state)
        best_epoch = stopper.best_epoch
    else:
        best_epoch = epoch
    return TrainResult(
        history=history,
        best_epoch=best_epoch,
        epochs_run=epoch + 1,
        stopped_early=stopped_early,
        best_val_loss=history["val_loss"][best_epoch],
        best_val_accuracy=history["val_accuracy"][best_epoch],
    )


def _check_data(model: MLP, loss: str, X: np.ndarray, y: np.ndarray, split: str) -> None:
    """Shapes and labels that would otherwise fail deep inside the math, or silently."""
    if X.ndim != 2 or X.shape[1] != model.widths[0]:
        raise ValueError(f"{split} inputs must have shape (n, {model.widths[0]}); got {X.shape}")
    if len(X) == 0:
        raise ValueError(f"{split} inputs must have at least one row; got 0")
    if len(y) != len(X):
        raise ValueError(f"{split} targets must have {len(X)} rows, like the inputs; got {len(y)}")
    if loss == "cross_entropy" and y.ndim == 1:
        n_classes = model.widths[-1]
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{split} labels must be integers in [0, {n_classes}); got {y.dtype}")
        if y.min() < 0 or y.max() >= n_classes:
            raise ValueError(
                f"{split} labels must lie in [0, {n_classes}); got [{y.min()}, {y.max()}]"
            )


def _run_epoch(model, loss_fn, optimizer, X, y, config, rng, augment, epoch) -> float:
    """One pass over shuffled mini-batches; returns the mean training-mode data loss."""
    n = len(X)
    order = rng.permutation(n)
    y_shuffled = y[order]
    # Each batch's rows are gathered into one reused buffer (batch_size, d) while it is
    # needed, instead of a shuffled copy of the whole training set written once per epoch
    # and read back from memory batch by batch.
    batch_buffer = np.empty((min(config.batch_size, n), X.shape[1]), dtype=X.dtype)
    penalty = config.penalty if config.penalty.active else None
    weights = model.weight_group  # every weight matrix, as one flat view
    params = [model.flat]  # weights and biases in one buffer
    total = 0.0
    for start in range(0, n, config.batch_size):
        rows = order[start : start + config.batch_size]
        # Any mode but "raise" lets take write straight into out; the rows are in range.
        X_batch = np.take(X, rows, axis=0, out=batch_buffer[: len(rows)], mode="clip")
        y_batch = y_shuffled[start : start + config.batch_size]
        if augment is not None:
            X_batch = augment(X_batch, rng)

        output = model.forward(X_batch, training=True, rng=rng)

        data_loss = loss_fn.forward(output, y_batch)
        if not math.isfinite(data_loss):
            raise DivergenceError(epoch=epoch, learning_rate=config.learning_rate)
        total += data_loss * len(X_batch)

        model.backward(loss_fn.backward())
        if penalty is not None:
            penalty.add_gradient(weights.value, weights.grad)

        optimizer.step(params)
    return total / n


class EpochEvaluator:
    """Evaluation-mode metrics of the training and validation splits in one forward pass.

    The two splits are stacked once, before the first epoch, so each epoch runs the layers
    once over both instead of twice (one call per layer costs as much as a small batch's
    arithmetic on digits). The stacked copy costs the memory of both splits once.
    """

    def __init__(self, loss, X_train, y_train, X_val, y_val, with_train: bool) -> None:
        self.loss = LOSSES[loss]()
        self.y_train, self.y_val = y_train, y_val
        self.n_train = len(X_train) if with_train else 0
        self.X = np.concatenate([X_train, X_val]) if with_train else X_val

    def __call__(self, model: MLP) -> tuple[float, float, float, float]:
        """``(train_loss, train_score, val_loss, val_score)``; train ones NaN when off."""
        output = model.predict_output(self.X)
        val = output[self.n_train :]
        val_loss, val_score = self.loss.forward(val, self.y_val), self.loss.score(val, self.y_val)
        if not self.n_train:
            return np.nan, np.nan, val_loss, val_score
        train = output[: self.n_train]
        train_loss = self.loss.forward(train, self.y_train)
        return train_loss, self.loss.score(train, self.y_train), val_loss, val_score


def _epoch_record(model, evaluator, config, epoch) -> dict[str, float]:
    """Evaluation-mode metrics after an epoch: no dropout, no augmentation, no penalty."""
    train_loss, train_score, val_loss, val_score = evaluator(model)
    if not math.isfinite(val_loss):
        raise DivergenceError(
            epoch=epoch, learning_rate=config.learning_rate, what="validation loss"
        )
    return {
        "train_loss": train_loss,
        "val_loss": val_loss,
        "train_accuracy": train_score,
        "val_accuracy": val_score,
        "penalty": config.penalty.value(model.weights),
        "gap_loss": val_loss - train_loss,
    }
