"""scikit-learn compatible estimators around the NumPy trainer of ``core.nn``.

``MLPClassifier`` and ``MLPRegressor`` build a ``core.nn.MLP``, fit it with ``core.nn.train``
and expose the usual ``fit`` / ``predict`` / ``predict_proba`` / ``score`` API, so they work
with ``clone``, pipelines, grid searches and cross-validation.

Conventions shared by both estimators:

- ``strength`` is the penalty ``lam`` of ``core.nn.penalties``: ``l2`` adds
  ``lam / 2 * sum W^2`` to the mean data loss of every mini-batch (gradient ``lam * W``),
  ``l1`` adds ``lam * sum |W|``, and ``elastic_net`` mixes the two with ``l1_ratio``. Biases
  are never penalized. scikit-learn's ``MLPClassifier(alpha=a)`` adds ``a / 2 * ||W||^2``
  divided by the batch size to the mean batch loss, so ``regularizer="l2"`` with
  ``strength = a / batch_size`` gives the same gradient for cross-entropy. (For regression
  scikit-learn's squared loss carries a factor one half that ``core.nn``'s does not.)
- ``weight_decay`` is decoupled decay applied in the optimizer step, not a penalty.
- Without early stopping (``patience=None``) every row is used for training, and the
  training set itself is passed to the trainer as its "validation" set: ``history_`` then
  reports training-set metrics under the ``val_*`` keys too. With ``patience`` set, a
  ``validation_fraction`` share of the rows (stratified by class for the classifier) is held
  out, training stops after ``patience`` epochs without a ``min_delta`` improvement of the
  held-out loss, and the best epoch's weights are restored.
- ``random_state`` seeds, through ``numpy.random.SeedSequence``, three independent streams:
  weight initialisation, training (shuffling and dropout) and the validation split.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from core.nn import MLP, OPTIMIZERS, PENALTY_KINDS, Penalty, TrainConfig, train
from core.nn.layers import ACTIVATIONS
from core.nn.losses import softmax

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sklearn_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _sklearn_validate_data = None

logger = logging.getLogger(__name__)

__all__ = ["MLPClassifier", "MLPRegressor"]

AUTO_BATCH_SIZE_CAP = 200
DTYPES = ("float32", "float64")
_NO_TARGET = object()


def _validate_data(
    estimator: BaseEstimator, X: Any, y: Any = _NO_TARGET, **check_params: Any
) -> Any:
    """``validate_data`` of scikit-learn >= 1.6, else ``check_X_y`` / ``check_array``.

    ``reset=True`` records ``n_features_in_``; ``reset=False`` checks ``X`` against it. The
    fallback does not track ``feature_names_in_``.
    """
    reset = check_params.pop("reset", True)
    if _sklearn_validate_data is not None:
        if y is _NO_TARGET:
            return _sklearn_validate_data(estimator, X, reset=reset, **check_params)
        return _sklearn_validate_data(estimator, X, y, reset=reset, **check_params)

    if y is _NO_TARGET:
        checked = X = check_array(X, **check_params)
    else:
        checked = X, _ = check_X_y(X, y, **check_params)
    if reset:
        estimator.n_features_in_ = X.shape[1]
    elif X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    return checked


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class _ParamChecker:
    """Builds scikit-learn style messages: parameter, estimator, allowed values, value got."""

    def __init__(self, estimator: BaseEstimator) -> None:
        self.owner = type(estimator).__name__

    def fail(self, name: str, allowed: str, value: Any) -> ValueError:
        return ValueError(
            f"The {name!r} parameter of {self.owner} must be {allowed}. Got {value!r} instead."
        )

    def choice(self, name: str, value: Any, options: Sequence[str]) -> str:
        if not isinstance(value, str) or value not in options:
            allowed = "a str among {" + ", ".join(repr(o) for o in options) + "}"
            raise self.fail(name, allowed, value)
        return value

    def integer(self, name: str, value: Any, *, low: int) -> int:
        if not _is_int(value) or value < low:
            raise self.fail(name, f"an int in the range [{low}, inf)", value)
        return int(value)

    def real(
        self,
        name: str,
        value: Any,
        *,
        low: float,
        high: float = np.inf,
        closed: str = "left",
    ) -> float:
        """A finite real in the interval from ``low`` to ``high``; ``closed`` is one of
        ``left``, ``right``, ``both``, ``neither``."""
        if _is_real(value) and np.isfinite(value):
            left_ok = value >= low if closed in ("left", "both") else value > low
            right_ok = value <= high if closed in ("right", "both") else value < high
            if left_ok and right_ok:
                return float(value)
        left = "[" if closed in ("left", "both") else "("
        right = "]" if closed in ("right", "both") else ")"
        raise self.fail(name, f"a float in the range {left}{low}, {high}{right}", value)


class _BaseMLP(BaseEstimator):
    """Hyperparameters and the fit loop shared by the classifier and the regressor.

    The constructor only stores its keyword arguments (documented on ``MLPClassifier`` and
    ``MLPRegressor``); ``fit`` validates them.
    """

    _loss: str = ""

    def __init__(
        self,
        *,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "relu",
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        batch_size: int | str = 64,
        max_epochs: int = 200,
        regularizer: str = "none",
        strength: float = 0.0,
        l1_ratio: float = 0.5,
        weight_decay: float = 0.0,
        dropout_rate: float = 0.0,
        patience: int | None = None,
        min_delta: float = 0.0,
        validation_fraction: float = 0.1,
        random_state: int | np.random.RandomState | None = None,
        dtype: str = "float32",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.regularizer = regularizer
        self.strength = strength
        self.l1_ratio = l1_ratio
        self.weight_decay = weight_decay
        self.dropout_rate = dropout_rate
        self.patience = patience
        self.min_delta = min_delta
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.dtype = dtype

    def _checked_params(self) -> dict[str, Any]:
        """Validate every hyperparameter; return the normalised values ``fit`` uses.

        Raises:
            ValueError: A hyperparameter is out of range or of the wrong type; the message
                names the parameter, the allowed values and the value received.
        """
        check = _ParamChecker(self)
        hidden = self.hidden_layer_sizes
        if _is_int(hidden):
            hidden = (hidden,)
        if (
            isinstance(hidden, str)
            or not isinstance(hidden, Sequence | np.ndarray)
            or not all(_is_int(width) and width >= 1 for width in hidden)
        ):
            raise check.fail(
                "hidden_layer_sizes",
                "a positive int or a sequence of positive ints",
                self.hidden_layer_sizes,
            )
        if isinstance(self.batch_size, str):
            batch_size = check.choice("batch_size", self.batch_size, ("auto",))
        elif _is_int(self.batch_size) and self.batch_size >= 1:
            batch_size = int(self.batch_size)
        else:
            raise check.fail(
                "batch_size", "an int in the range [1, inf) or 'auto'", self.batch_size
            )
        if self.patience is None:
            patience = None
        else:
            patience = check.integer("patience", self.patience, low=1)
        random_state = self.random_state
        if not (
            random_state is None
            or isinstance(random_state, np.random.RandomState)
            or (_is_int(random_state) and random_state >= 0)
        ):
            raise check.fail(
                "random_state",
                "None, an int in the range [0, inf) or a numpy.random.RandomState",
                random_state,
            )
        try:
            dtype = None if self.dtype is None else np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype.name not in DTYPES:
            raise check.fail("dtype", "one of {'float32', 'float64'}", self.dtype)

        return {
            "hidden": tuple(int(width) for width in hidden),
            "activation": check.choice("activation", self.activation, tuple(ACTIVATIONS)),
            "optimizer": check.choice("optimizer", self.optimizer, OPTIMIZERS),
            "learning_rate": check.real(
                "learning_rate", self.learning_rate, low=0.0, closed="neither"
            ),
            "batch_size": batch_size,
            "max_epochs": check.integer("max_epochs", self.max_epochs, low=1),
            "regularizer": check.choice("regularizer", self.regularizer, PENALTY_KINDS),
            "strength": check.real("strength", self.strength, low=0.0),
            "l1_ratio": check.real("l1_ratio", self.l1_ratio, low=0.0, high=1.0, closed="both"),
            "weight_decay": check.real("weight_decay", self.weight_decay, low=0.0),
            "dropout_rate": check.real("dropout_rate", self.dropout_rate, low=0.0, high=1.0),
            "patience": patience,
            "min_delta": check.real("min_delta", self.min_delta, low=0.0),
            "validation_fraction": check.real(
                "validation_fraction",
                self.validation_fraction,
                low=0.0,
                high=1.0,
                closed="neither",
            ),
            "dtype": dtype,
        }

    def _seed_sequence(self) -> np.random.SeedSequence:
        """The root of every random stream of one fit, from ``random_state``."""
        if self.random_state is None:
            return np.random.SeedSequence()
        if isinstance(self.random_state, np.random.RandomState):
            return np.random.SeedSequence(int(self.random_state.randint(np.iinfo(np.int32).max)))
        return np.random.SeedSequence(int(self.random_state))

    def _fit_network(
        self,
        params: dict[str, Any],
        X: np.ndarray,
        y: np.ndarray,
        n_outputs: int,
        *,
        stratify: bool,
    ) -> None:
        """Split (if early stopping), build, train, and store the fitted attributes.

        Raises:
            core.nn.DivergenceError: The training or validation loss became non-finite.
        """
        init_seed, train_seed, split_seed = self._seed_sequence().spawn(3)
        if params["patience"] is None:
            # Every row trains; the trainer's validation set is the training set itself.
            X_train, y_train, X_val, y_val = X, y, X, y
        else:
            X_train, X_val, y_train, y_val = train_test_split(
                X,
                y,
                test_size=params["validation_fraction"],
                random_state=int(split_seed.generate_state(1)[0]),
                stratify=y if stratify else None,
            )
        batch_size = params["batch_size"]
        if batch_size == "auto":
            batch_size = min(AUTO_BATCH_SIZE_CAP, len(X_train))

        model = MLP(
            X.shape[1],
            params["hidden"],
            n_outputs,
            activation=params["activation"],
            dropout_rate=params["dropout_rate"],
            seed=np.random.default_rng(init_seed),
            dtype=params["dtype"],
        )
        config = TrainConfig(
            max_epochs=params["max_epochs"],
            batch_size=batch_size,
            optimizer=params["optimizer"],
            learning_rate=params["learning_rate"],
            penalty=Penalty(params["regularizer"], params["strength"], params["l1_ratio"]),
            weight_decay=params["weight_decay"],
            patience=params["patience"],
            min_delta=params["min_delta"],
            seed=train_seed,
        )
        result = train(model, X_train, y_train, X_val, y_val, config, loss=self._loss)

        self.model_ = model
        self.history_ = {key: list(values) for key, values in result.history.items()}
        self.loss_curve_ = list(result.history["train_objective"])
        self.best_epoch_ = result.best_epoch
        self.n_iter_ = result.epochs_run
        logger.debug(
            "%s fitted: %d epochs, best epoch %d, stopped early: %s",
            type(self).__name__,
            result.epochs_run,
            result.best_epoch,
            result.stopped_early,
        )

    def _network_output(self, X: Any) -> np.ndarray:
        """Evaluation-mode network output ``(n, k)`` for validated ``X``."""
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, dtype=self.model_.dtype)
        return self.model_.predict_output(X)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier: softmax cross-entropy over one output per class.

    Binary problems use two softmax outputs. Labels may be of any type ``LabelEncoder``
    accepts (ints, strings); ``classes_`` holds them sorted. Hyperparameters are stored
    untouched and validated by ``fit``; the module docstring describes the conventions.

    Args:
        hidden_layer_sizes: Widths of the hidden layers: a sequence of positive ints (an
            empty sequence gives a linear model) or a single positive int for one layer.
        activation: Hidden activation, ``relu`` or ``tanh``.
        optimizer: ``sgd``, ``momentum`` (coefficient 0.9) or ``adam``.
        learning_rate: Step size, ``> 0``.
        batch_size: Rows per mini-batch, an int ``>= 1`` or ``"auto"`` for
            ``min(200, n_train)`` as in scikit-learn. A batch size larger than the training
            set means one full batch per epoch.
        max_epochs: Upper bound on passes over the training data, ``>= 1``.
        regularizer: Weight penalty kind: ``none``, ``l1``, ``l2`` or ``elastic_net``.
        strength: The penalty ``lam >= 0`` (see the module docstring for the convention
            and the mapping from scikit-learn's ``alpha``).
        l1_ratio: Share of L1 in the elastic net, in ``[0, 1]``.
        weight_decay: Decoupled weight decay ``>= 0`` applied in the optimizer step.
        dropout_rate: Probability of dropping a hidden unit in training, in ``[0, 1)``.
        patience: Epochs without improvement of the held-out loss before stopping, an int
            ``>= 1``; None trains on every row for ``max_epochs`` epochs.
        min_delta: Smallest decrease of the held-out loss that counts as improvement.
        validation_fraction: Share of rows held out when ``patience`` is set, in ``(0, 1)``.
        random_state: None (fresh entropy on every fit), a non-negative int (reproducible)
            or a ``numpy.random.RandomState`` (one int is drawn from it per fit).
        dtype: ``float32`` or ``float64``, the precision of weights and computation.

    Attributes:
        classes_: The class labels, in the order of ``predict_proba`` columns.
        n_features_in_: Number of features seen by ``fit``.
        model_: The trained ``core.nn.MLP``.
        history_: Per-epoch records of the trainer (``train_loss``, ``val_loss``,
            ``train_accuracy``, ``val_accuracy``, ``penalty``, ``gap_loss``,
            ``train_objective``, ``epoch_seconds``).
        loss_curve_: Training objective (mean training-mode batch loss plus penalty) per
            epoch.
        best_epoch_: Zero-based epoch whose weights the model holds.
        n_iter_: Number of epochs run.
    """

    _loss = "cross_entropy"

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train on ``X`` ``(n, d)`` and class labels ``y`` ``(n,)``.

        Args:
            X: Training inputs.
            y: Class labels; at least two distinct classes.

        Returns:
            The fitted estimator.

        Raises:
            ValueError: Invalid hyperparameters or data, or fewer than two classes.
            core.nn.DivergenceError: Training diverged.
        """
        params = self._checked_params()
        X, y = _validate_data(self, X, y, dtype=params["dtype"])
        check_classification_targets(y)
        encoder = LabelEncoder()
        y_encoded = encoder.fit_transform(y)
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data; "
                f"got 1 class: {encoder.classes_[0]!r}"
            )
        self._fit_network(params, X, y_encoded, len(encoder.classes_), stratify=True)
        self.classes_ = encoder.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` in float64, columns in ``classes_`` order."""
        logits = self._network_output(X)
        return softmax(logits.astype(np.float64))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class label of every row, ``(n,)``."""
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor: linear outputs trained on mean squared error.

    ``y`` may be 1-D ``(n,)`` or 2-D ``(n, k)``; ``predict`` returns the same dimensionality
    as the ``y`` given to ``fit``. Targets are not rescaled: standardize them for a
    well-conditioned fit. Hyperparameters are stored untouched and validated by ``fit``; the
    module docstring describes the conventions.

    Args:
        hidden_layer_sizes: Widths of the hidden layers: a sequence of positive ints (an
            empty sequence gives a linear model) or a single positive int for one layer.
        activation: Hidden activation, ``relu`` or ``tanh``.
        optimizer: ``sgd``, ``momentum`` (coefficient 0.9) or ``adam``.
        learning_rate: Step size, ``> 0``.
        batch_size: Rows per mini-batch, an int ``>= 1`` or ``"auto"`` for
            ``min(200, n_train)`` as in scikit-learn. A batch size larger than the training
            set means one full batch per epoch.
        max_epochs: Upper bound on passes over the training data, ``>= 1``.
        regularizer: Weight penalty kind: ``none``, ``l1``, ``l2`` or ``elastic_net``.
        strength: The penalty ``lam >= 0`` (see the module docstring for the convention
            and the mapping from scikit-learn's ``alpha``).
        l1_ratio: Share of L1 in the elastic net, in ``[0, 1]``.
        weight_decay: Decoupled weight decay ``>= 0`` applied in the optimizer step.
        dropout_rate: Probability of dropping a hidden unit in training, in ``[0, 1)``.
        patience: Epochs without improvement of the held-out loss before stopping, an int
            ``>= 1``; None trains on every row for ``max_epochs`` epochs.
        min_delta: Smallest decrease of the held-out loss that counts as improvement.
        validation_fraction: Share of rows held out when ``patience`` is set, in ``(0, 1)``.
        random_state: None (fresh entropy on every fit), a non-negative int (reproducible)
            or a ``numpy.random.RandomState`` (one int is drawn from it per fit).
        dtype: ``float32`` or ``float64``, the precision of weights and computation.

    Attributes:
        n_features_in_: Number of features seen by ``fit``.
        n_outputs_: Number of target columns.
        model_: The trained ``core.nn.MLP``.
        history_: Per-epoch records of the trainer (``*_accuracy`` hold R2 scores).
        loss_curve_: Training objective (mean training-mode batch MSE plus penalty) per
            epoch.
        best_epoch_: Zero-based epoch whose weights the model holds.
        n_iter_: Number of epochs run.
    """

    _loss = "mse"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train on ``X`` ``(n, d)`` and numeric targets ``y`` ``(n,)`` or ``(n, k)``.

        Args:
            X: Training inputs.
            y: Targets.

        Returns:
            The fitted estimator.

        Raises:
            ValueError: Invalid hyperparameters or data.
            core.nn.DivergenceError: Training diverged.
        """
        params = self._checked_params()
        X, y = _validate_data(self, X, y, dtype=params["dtype"], multi_output=True, y_numeric=True)
        y_2d = np.asarray(y, dtype=params["dtype"]).reshape(len(y), -1)
        self._fit_network(params, X, y_2d, y_2d.shape[1], stratify=False)
        self.n_outputs_ = y_2d.shape[1]
        self._target_ndim = np.ndim(y)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions in float64: ``(n,)`` if ``fit`` saw a 1-D ``y``, else ``(n, k)``."""
        output = self._network_output(X).astype(np.float64)
        return output[:, 0] if self._target_ndim == 1 else output
