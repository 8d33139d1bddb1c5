"""Softmax cross-entropy, mean squared error, accuracy and R2 against closed forms,
scikit-learn, SciPy and central differences."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.special import softmax as scipy_softmax
from sklearn.datasets import load_diabetes
from sklearn.metrics import log_loss, mean_squared_error
from sklearn.metrics import r2_score as sklearn_r2_score

from core.nn import MLP, MeanSquaredError, SoftmaxCrossEntropy, accuracy, r2_score
from core.nn.losses import cross_entropy_from_probabilities, softmax

from .finite_differences import central_difference, relative_error

GRAD_TOL = 1e-6
FP_RAISE = {"over": "raise", "invalid": "raise", "divide": "raise"}


def one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[labels]


# --- B05: softmax and cross-entropy far from zero --------------------------------------------


def test_softmax_of_huge_logits_does_not_overflow():
    z = np.array([[1000.0, 0.0, -1000.0]])
    with np.errstate(**FP_RAISE):
        p = softmax(z)
    np.testing.assert_allclose(p, [[1.0, 0.0, 0.0]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), [1.0], rtol=0, atol=1e-12)


def test_softmax_matches_scipy_and_rows_sum_to_one():
    z = np.random.default_rng(0).standard_normal((7, 4)) * 5
    np.testing.assert_allclose(softmax(z), scipy_softmax(z, axis=1), rtol=1e-13, atol=0)
    np.testing.assert_allclose(softmax(z).sum(axis=1), np.ones(7), rtol=0, atol=1e-14)


def test_cross_entropy_of_confident_correct_logits_is_zero():
    with np.errstate(**FP_RAISE):
        loss = SoftmaxCrossEntropy().forward(np.array([[1000.0, 0.0, -1000.0]]), np.array([0]))
    assert 0.0 <= loss <= 1e-12


def test_cross_entropy_of_confident_wrong_logits_is_exactly_the_logit_gap():
    # -log softmax(z)[2] = logsumexp(z) - z[2] = 1000 - (-1000) = 2000, computed from logits.
    loss_fn = SoftmaxCrossEntropy()
    with np.errstate(**FP_RAISE):
        loss = loss_fn.forward(np.array([[1000.0, 0.0, -1000.0]]), np.array([2]))
        grad = loss_fn.backward()
    assert loss == 2000.0
    np.testing.assert_allclose(grad, np.array([[1.0, 0.0, -1.0]]) / 1, rtol=0, atol=1e-12)


def test_cross_entropy_from_probabilities_clips_zero_probability_for_list_input():
    # The brief's call, with plain Python lists.
    with np.errstate(**FP_RAISE):
        loss = cross_entropy_from_probabilities([[1.0, 0.0]], [1])
    assert np.isfinite(loss)
    assert loss == pytest.approx(-np.log(1e-12), abs=1e-9)
    assert loss == pytest.approx(27.631021115928547, abs=1e-9)


def test_cross_entropy_from_probabilities_clips_zero_probability_for_array_input():
    with np.errstate(**FP_RAISE):
        loss = cross_entropy_from_probabilities(np.array([[1.0, 0.0]]), np.array([1]))
    assert np.isfinite(loss)
    assert loss == pytest.approx(-np.log(1e-12), abs=1e-9)


def test_cross_entropy_matches_sklearn_log_loss():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((12, 4)) * 3
    labels = rng.integers(0, 4, 12)
    expected = log_loss(labels, scipy_softmax(z, axis=1), labels=range(4))
    assert SoftmaxCrossEntropy().forward(z, labels) == pytest.approx(expected, abs=1e-12)
    # And the log-sum-exp closed form, row by row.
    by_hand = np.mean([logsumexp(z[i]) - z[i, labels[i]] for i in range(12)])
    assert SoftmaxCrossEntropy().forward(z, labels) == pytest.approx(by_hand, abs=1e-12)


def test_cross_entropy_gradient_matches_central_differences():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((6, 3)) * 3
    labels = rng.integers(0, 3, 6)
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.forward(z, labels)
    analytic = loss_fn.backward()
    np.testing.assert_allclose(
        analytic, (scipy_softmax(z, axis=1) - one_hot(labels, 3)) / 6, rtol=0, atol=1e-15
    )
    numeric = central_difference(lambda: SoftmaxCrossEntropy().forward(z, labels), z)
    assert relative_error(analytic, numeric) < GRAD_TOL


def test_cross_entropy_accepts_one_hot_targets_like_integer_labels():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((9, 5))
    labels = rng.integers(0, 5, 9)
    a, b = SoftmaxCrossEntropy(), SoftmaxCrossEntropy()
    assert a.forward(z, labels) == pytest.approx(b.forward(z, one_hot(labels, 5)), abs=1e-15)
    np.testing.assert_array_equal(a.backward(), b.backward())


def test_cross_entropy_is_unchanged_by_duplicating_the_batch():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((5, 3))
    labels = rng.integers(0, 3, 5)
    once, twice = SoftmaxCrossEntropy(), SoftmaxCrossEntropy()
    loss_once = once.forward(z, labels)
    loss_twice = twice.forward(np.vstack([z, z]), np.concatenate([labels, labels]))
    assert loss_twice == pytest.approx(loss_once, abs=1e-12)
    # Each duplicated row carries half the gradient of the original row.
    np.testing.assert_allclose(twice.backward()[:5] * 2, once.backward(), rtol=0, atol=1e-15)


# --- B06: mean squared error -----------------------------------------------------------------


def test_mse_value_and_gradient_closed_form():
    loss_fn = MeanSquaredError()
    loss = loss_fn.forward(np.array([[1.0], [2.0], [3.0]]), np.array([0.0, 0.0, 0.0]))
    assert loss == pytest.approx(14.0 / 3.0, abs=1e-12)
    assert round(loss, 6) == 4.666667
    np.testing.assert_allclose(
        loss_fn.backward().ravel(), [2.0 / 3.0, 4.0 / 3.0, 2.0], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        loss_fn.backward().ravel(), [0.666667, 1.333333, 2.0], rtol=0, atol=1e-6
    )


def test_mse_matches_sklearn_for_two_outputs_and_its_gradient_is_exact():
    rng = np.random.default_rng(5)
    prediction = rng.standard_normal((7, 2))
    y = rng.standard_normal((7, 2))
    loss_fn = MeanSquaredError()
    loss = loss_fn.forward(prediction, y)
    assert loss == pytest.approx(mean_squared_error(y, prediction), abs=1e-12)
    numeric = central_difference(lambda: MeanSquaredError().forward(prediction, y), prediction)
    assert relative_error(loss_fn.backward(), numeric) < GRAD_TOL


@pytest.fixture(scope="module")
def diabetes16():
    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = (y - y.mean()) / y.std()
    return X[:16].copy(), y[:16].copy()


def _mse_gradients(model: MLP, X: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
    loss_fn = MeanSquaredError()
    loss = loss_fn.forward(model.forward(X), y)
    model.backward(loss_fn.backward())
    return loss, [p.grad.copy() for p in model.parameters]


def test_mse_regressor_gradients_match_central_differences(diabetes16):
    X, y = diabetes16
    model = MLP(10, (6,), 1, activation="tanh", seed=0, dtype=np.float64)
    for layer in model.dense:
        layer.b[:] = 0.1 * np.random.default_rng(1).standard_normal(layer.b.shape)
    _, analytic = _mse_gradients(model, X, y)
    for p, grad in zip(model.parameters, analytic, strict=True):
        numeric = central_difference(
            lambda: MeanSquaredError().forward(model.forward(X), y), p.value, h=1e-6
        )
        assert relative_error(grad, numeric) < GRAD_TOL, p.name


def test_mse_regressor_loss_and_gradients_unchanged_by_duplicating_the_batch(diabetes16):
    X, y = diabetes16
    model = MLP(10, (6,), 1, activation="relu", seed=0, dtype=np.float64)
    loss_once, grads_once = _mse_gradients(model, X, y)
    loss_twice, grads_twice = _mse_gradients(model, np.vstack([X, X]), np.concatenate([y, y]))
    assert abs(loss_twice - loss_once) <= 1e-12
    for g_once, g_twice in zip(grads_once, grads_twice, strict=True):
        np.testing.assert_allclose(g_twice, g_once, rtol=0, atol=1e-12)


def test_mse_regressor_with_two_outputs_passes_the_finite_difference_check(diabetes16):
    X, y = diabetes16
    Y = np.column_stack([y, X[:, 2] - 0.5 * y])  # (16, 2)
    model = MLP(10, (6,), 2, activation="tanh", seed=3, dtype=np.float64)
    _, analytic = _mse_gradients(model, X, Y)
    for p, grad in zip(model.parameters, analytic, strict=True):
        numeric = central_difference(
            lambda: mean_squared_error(Y, model.forward(X)), p.value, h=1e-6
        )
        assert relative_error(grad, numeric) < GRAD_TOL, p.name


# --- B26: accuracy ---------------------------------------------------------------------------

P_B26 = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]
Y_B26 = [0, 1, 1, 1]


def test_accuracy_of_probabilities_with_integer_and_one_hot_labels():
    assert accuracy(np.array(P_B26), np.array(Y_B26)) == 0.75
    assert accuracy(np.array(P_B26), one_hot(np.array(Y_B26), 2)) == 0.75
    assert accuracy(P_B26, Y_B26) == 0.75


def test_accuracy_of_predicted_labels():
    assert accuracy(np.array([0, 1, 0, 1]), np.array(Y_B26)) == 0.75


def test_cross_entropy_of_log_probabilities_same_for_integer_and_one_hot_targets():
    logits = np.log(np.array(P_B26))
    labels = np.array(Y_B26)
    by_label = SoftmaxCrossEntropy().forward(logits, labels)
    by_one_hot = SoftmaxCrossEntropy().forward(logits, one_hot(labels, 2))
    assert abs(by_label - by_one_hot) <= 1e-12
    expected = -np.mean(np.log([0.9, 0.8, 0.4, 0.7]))
    assert by_label == pytest.approx(expected, abs=1e-12)


# --- R2 --------------------------------------------------------------------------------------


def test_r2_matches_sklearn_uniform_average_over_outputs():
    rng = np.random.default_rng(6)
    y = rng.standard_normal((20, 3))
    prediction = y + 0.5 * rng.standard_normal((20, 3))
    assert r2_score(prediction, y) == pytest.approx(sklearn_r2_score(y, prediction), abs=1e-12)
    assert MeanSquaredError.score(prediction, y) == pytest.approx(
        sklearn_r2_score(y, prediction), abs=1e-12
    )


def test_r2_of_constant_target_is_one_when_perfect_and_zero_otherwise():
    y = np.full((5, 1), 3.0)
    assert r2_score(y.copy(), y) == 1.0
    assert r2_score(y + 0.1, y) == 0.0


def test_accuracy_reads_a_label_column_as_labels_not_one_hot():
    scores = np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    labels = np.array([[0], [1], [1]])
    assert accuracy(scores, labels) == pytest.approx(2 / 3)
