"""Tests of the scikit-learn estimators in ``core.estimators``."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_digits, load_iris
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import core.estimators
from core.estimators import MLPClassifier, MLPRegressor
from core.nn import MLP, DivergenceError

# Small, fast settings for scikit-learn's checks: 20 epochs are enough at a learning rate of
# 1e-2 for check_classifiers_train (training accuracy > 0.83 on blobs; we reach ~0.94) and
# check_regressors_train (R2 > 0.5; we reach ~0.84). The class defaults stay untouched.
CHECK_SETTINGS = {"hidden_layer_sizes": (32,), "max_epochs": 20, "learning_rate": 1e-2}
CHECKED_ESTIMATORS = [
    cls(**CHECK_SETTINGS, dtype=dtype)
    for cls in (MLPClassifier, MLPRegressor)
    for dtype in ("float32", "float64")
]


def expected_failed_checks(estimator) -> dict[str, str]:
    """Checks expected to fail for one estimator instance.

    Besides this list, scikit-learn itself skips check_array_api_input (4 cases) unless the
    SCIPY_ARRAY_API environment variable is set; the estimators do not support array API
    inputs.
    """
    if estimator.dtype == "float32" and isinstance(estimator, MLPRegressor):
        return {
            # Predicting one row at a time and all rows at once goes through different BLAS
            # kernels whose float32 sums differ in the last bit (~2e-7 relative), above the
            # check's rtol=1e-7 and atol=1e-7. The float64 instances pass it. The float32
            # classifier passes: softmax shrinks its ~4e-7 logit differences to ~6e-8.
            "check_methods_subset_invariance": (
                "float32 matrix products differ by ~1 ulp between a single row and a batch"
            ),
        }
    return {}


@parametrize_with_checks(CHECKED_ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# 150 rows are three batches of 64 per epoch: a learning rate of 1e-2 fits iris in 30 epochs.
IRIS_SETTINGS = {"hidden_layer_sizes": (16,), "max_epochs": 30, "learning_rate": 1e-2}


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def digits_split():
    """Digits with a stratified split of exactly 20 batches of 64 training rows, scaled."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=1280, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_matches_sklearn_mlp_on_digits(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    epochs, batch_size, alpha = 50, 64, 1.0
    # scikit-learn (neural_network/_multilayer_perceptron.py, _backprop and
    # _compute_loss_grad) adds (alpha / 2) * ||W||^2 / n_batch to the mean cross-entropy of a
    # batch, so its weight gradient is mean data gradient + (alpha / n_batch) * W. Our l2
    # penalty (lam / 2) * ||W||^2 is added to the same mean batch loss, gradient lam * W,
    # hence lam = alpha / batch_size. 1280 training rows are exactly 20 full batches of 64, so
    # the mapping also holds for the last batch of every epoch. alpha = 1 makes the penalty
    # matter: it halves the weight norm compared with alpha = 1e-4.
    theirs = SklearnMLPClassifier(
        hidden_layer_sizes=(128,),
        activation="relu",
        solver="adam",
        alpha=alpha,
        batch_size=batch_size,
        learning_rate_init=1e-3,
        max_iter=epochs,
        shuffle=True,
        early_stopping=False,
        n_iter_no_change=10 * epochs,
        tol=0.0,
        random_state=0,
    ).fit(X_train, y_train)
    ours = MLPClassifier(
        hidden_layer_sizes=(128,),
        activation="relu",
        optimizer="adam",
        learning_rate=1e-3,
        batch_size=batch_size,
        max_epochs=epochs,
        regularizer="l2",
        strength=alpha / batch_size,
        patience=None,
        random_state=0,
    ).fit(X_train, y_train)

    their_accuracy = theirs.score(X_test, y_test)
    our_accuracy = ours.score(X_test, y_test)
    assert their_accuracy > 0.9
    assert abs(our_accuracy - their_accuracy) <= 0.02, (our_accuracy, their_accuracy)
    # Same penalty, same equilibrium: squared weight norms and final objectives agree.
    their_norm = sum(float(np.sum(W**2)) for W in theirs.coefs_)
    our_norm = sum(float(np.sum(W.astype(np.float64) ** 2)) for W in ours.model_.weights)
    assert our_norm == pytest.approx(their_norm, rel=0.15)
    assert ours.loss_curve_[-1] == pytest.approx(theirs.loss_curve_[-1], rel=0.15)


def test_get_params_set_params_clone_round_trip():
    estimator = MLPClassifier(hidden_layer_sizes=(8, 4), regularizer="elastic_net", strength=0.1)
    params = estimator.get_params()
    assert params["hidden_layer_sizes"] == (8, 4)
    assert params["regularizer"] == "elastic_net"
    assert set(params) == set(MLPRegressor().get_params())

    assert estimator.set_params(strength=0.5, patience=3) is estimator
    assert estimator.get_params()["strength"] == 0.5
    assert estimator.get_params()["patience"] == 3

    copy = clone(estimator)
    assert copy is not estimator
    assert copy.get_params() == estimator.get_params()
    assert MLPClassifier(**estimator.get_params()).get_params() == estimator.get_params()


def test_fitted_attributes(iris):
    X, y = iris
    model = MLPClassifier(hidden_layer_sizes=(16,), max_epochs=7, random_state=0).fit(X, y)
    assert isinstance(model.model_, MLP)
    assert model.model_.widths == (4, 16, 3)
    assert model.n_features_in_ == 4
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    assert model.n_iter_ == 7
    assert model.best_epoch_ == 6
    assert len(model.loss_curve_) == 7
    assert model.loss_curve_ == model.history_["train_objective"]
    assert all(len(values) == 7 for values in model.history_.values())
    # Without early stopping every row trains and the "validation" set is the training set.
    assert model.history_["val_loss"] == model.history_["train_loss"]


def test_predict_proba_rows_sum_to_one_and_argmax_is_predict(iris):
    X, y = iris
    model = MLPClassifier(**IRIS_SETTINGS, random_state=0).fit(X, y)
    probabilities = model.predict_proba(X)
    assert probabilities.shape == (len(X), 3)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(model.classes_[probabilities.argmax(axis=1)], model.predict(X))
    assert model.score(X, y) > 0.8


def test_string_class_labels(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = MLPClassifier(**IRIS_SETTINGS, random_state=0)
    model.fit(X, names)
    np.testing.assert_array_equal(model.classes_, ["setosa", "versicolor", "virginica"])
    predicted = model.predict(X)
    assert predicted.dtype == names.dtype
    assert set(predicted) <= set(names)
    assert model.score(X, names) > 0.8


def test_binary_classification_uses_two_softmax_outputs(iris):
    X, y = iris
    keep = y > 0
    labels = np.where(y[keep] == 1, "no", "yes")
    model = MLPClassifier(**IRIS_SETTINGS, random_state=0)
    model.fit(X[keep], labels)
    assert model.model_.widths[-1] == 2
    assert model.predict_proba(X[keep]).shape == (int(keep.sum()), 2)


def test_int_random_state_is_reproducible(iris):
    X, y = iris
    settings = {"hidden_layer_sizes": (16,), "max_epochs": 5, "dropout_rate": 0.2}
    first = MLPClassifier(**settings, random_state=3).fit(X, y).predict_proba(X)
    second = MLPClassifier(**settings, random_state=3).fit(X, y).predict_proba(X)
    other = MLPClassifier(**settings, random_state=4).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_random_state_none_and_randomstate(iris):
    X, y = iris
    settings = {"hidden_layer_sizes": (16,), "max_epochs": 3}
    fresh = [MLPClassifier(**settings).fit(X, y).predict_proba(X) for _ in range(2)]
    assert not np.array_equal(*fresh)
    drawn = [
        MLPClassifier(**settings, random_state=np.random.RandomState(0)).fit(X, y).predict_proba(X)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(*drawn)


def test_early_stopping_holds_out_a_validation_split(iris):
    X, y = iris
    model = MLPClassifier(
        hidden_layer_sizes=(16,),
        max_epochs=300,
        learning_rate=1e-2,
        patience=5,
        validation_fraction=0.2,
        random_state=0,
    ).fit(X, y)
    assert model.n_iter_ < 300
    assert model.best_epoch_ == model.n_iter_ - 1 - 5
    assert model.history_["val_loss"] != model.history_["train_loss"]
    best = model.history_["val_loss"][model.best_epoch_]
    assert best == min(model.history_["val_loss"])


def test_regressor_beats_dummy_on_diabetes():
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    x_scaler = StandardScaler().fit(X_train)
    X_train, X_test = x_scaler.transform(X_train), x_scaler.transform(X_test)
    mean, std = y_train.mean(), y_train.std()
    y_train, y_test = (y_train - mean) / std, (y_test - mean) / std

    model = MLPRegressor(
        hidden_layer_sizes=(32,),
        learning_rate=1e-2,
        max_epochs=50,
        regularizer="l2",
        strength=0.1,
        random_state=0,
    ).fit(X_train, y_train)
    dummy = DummyRegressor().fit(X_train, y_train)
    ours, baseline = model.score(X_test, y_test), dummy.score(X_test, y_test)
    assert baseline < 0.05
    assert ours > 0.3
    assert ours > baseline + 0.3


@pytest.mark.parametrize("shape", [(60,), (60, 1), (60, 3)])
def test_regressor_prediction_has_the_dimensionality_of_y(shape):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = rng.standard_normal(shape)
    model = MLPRegressor(hidden_layer_sizes=(8,), max_epochs=3, random_state=0).fit(X, y)
    prediction = model.predict(X)
    assert prediction.shape == shape
    assert prediction.dtype == np.float64
    assert model.n_outputs_ == (shape[1] if len(shape) == 2 else 1)


def test_dtype_float64_builds_a_float64_model(iris):
    X, y = iris
    model = MLPClassifier(hidden_layer_sizes=(4,), max_epochs=2, dtype="float64", random_state=0)
    assert model.fit(X, y).model_.dtype == np.float64


def test_divergence_propagates():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)) * 100
    y = rng.standard_normal(64) * 100
    model = MLPRegressor(optimizer="sgd", learning_rate=1e3, max_epochs=20, random_state=0)
    with pytest.raises(DivergenceError, match="non-finite"):
        model.fit(X, y)


def test_single_class_is_rejected():
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier().fit(X, ["a"] * 5)


def test_invalid_regularizer_names_parameter_allowed_values_and_value(iris):
    X, y = iris
    match = (
        r"The 'regularizer' parameter of MLPClassifier must be a str among "
        r"\{'none', 'l1', 'l2', 'elastic_net'\}\. Got 'l3' instead\."
    )
    with pytest.raises(ValueError, match=match):
        MLPClassifier(regularizer="l3").fit(X, y)


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("hidden_layer_sizes", (16, 0), "a positive int or a sequence of positive ints"),
        ("hidden_layer_sizes", "16", "a positive int or a sequence of positive ints"),
        ("activation", "sigmoid", "a str among {'relu', 'tanh'}"),
        ("optimizer", "rmsprop", "a str among {'sgd', 'momentum', 'adam'}"),
        ("learning_rate", 0.0, "a float in the range (0.0, inf)"),
        ("learning_rate", float("nan"), "a float in the range (0.0, inf)"),
        ("batch_size", 0, "an int in the range [1, inf) or 'auto'"),
        ("batch_size", "full", "a str among {'auto'}"),
        ("max_epochs", 2.5, "an int in the range [1, inf)"),
        ("strength", -1.0, "a float in the range [0.0, inf)"),
        ("l1_ratio", 1.5, "a float in the range [0.0, 1.0]"),
        ("weight_decay", -0.1, "a float in the range [0.0, inf)"),
        ("dropout_rate", 1.0, "a float in the range [0.0, 1.0)"),
        ("patience", 0, "an int in the range [1, inf)"),
        ("min_delta", -1e-3, "a float in the range [0.0, inf)"),
        ("validation_fraction", 1.0, "a float in the range (0.0, 1.0)"),
        ("random_state", -1, "None, an int in the range [0, inf) or a numpy.random.RandomState"),
        ("dtype", "float16", "one of {'float32', 'float64'}"),
    ],
)
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_invalid_parameters_raise_in_fit(cls, name, value, allowed):
    X = np.random.default_rng(0).standard_normal((20, 3))
    y = np.arange(20) % 2
    estimator = cls(**{name: value})  # no validation in __init__
    expected = f"The {name!r} parameter of {cls.__name__} must be {allowed}. Got {value!r}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        estimator.fit(X, y)


def test_no_convergence_warning_when_max_epochs_is_reached():
    X = np.random.default_rng(0).standard_normal((20, 3))
    y = np.arange(20) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MLPClassifier(hidden_layer_sizes=(4,), max_epochs=1, random_state=0).fit(X, y)


def test_validation_fallback_without_validate_data(monkeypatch, iris):
    # scikit-learn < 1.6 has no validate_data: check_X_y / check_array and n_features_in_.
    monkeypatch.setattr(core.estimators, "_sklearn_validate_data", None)
    X, y = iris
    model = MLPClassifier(**IRIS_SETTINGS, random_state=0).fit(X, y)
    assert model.n_features_in_ == 4
    assert model.predict(X).shape == (len(X),)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4"):
        model.predict(X[:, :3])
    with pytest.raises(ValueError, match="requires y to be passed"):
        MLPRegressor().fit(X, None)
