"""Dense, ReLU, Tanh and Dropout: forward values, initialisation, and backward passes checked
against central differences of ``sum(out * R)`` (float64)."""

from __future__ import annotations

import numpy as np
import pytest

from core.nn.layers import Dense, Dropout, ReLU, Tanh

from .finite_differences import central_difference, relative_error

GRAD_TOL = 1e-6


# --- Dense -----------------------------------------------------------------------------------


def test_dense_forward_is_affine_map_with_bias_broadcast_over_rows():
    rng = np.random.default_rng(0)
    layer = Dense(3, 2, rng=rng, dtype=np.float64)
    layer.b[:] = [0.5, -1.5]
    X = rng.standard_normal((4, 3))
    expected = np.array(
        [
            [sum(X[i, k] * layer.W[k, j] for k in range(3)) + layer.b[j] for j in range(2)]
            for i in range(4)
        ]
    )
    np.testing.assert_allclose(layer.forward(X), expected, rtol=0, atol=1e-12)


def test_dense_he_init_is_normal_with_std_sqrt_two_over_fan_in_and_zero_bias():
    layer = Dense(400, 300, rng=np.random.default_rng(1), init="he", dtype=np.float64)
    assert layer.W.shape == (400, 300)
    assert abs(layer.W.std() - np.sqrt(2.0 / 400)) < 0.02 * np.sqrt(2.0 / 400)
    assert abs(layer.W.mean()) < 1e-3
    assert np.array_equal(layer.b, np.zeros(300))


def test_dense_glorot_init_is_uniform_within_limit():
    limit = np.sqrt(6.0 / (400 + 300))
    layer = Dense(400, 300, rng=np.random.default_rng(2), init="glorot", dtype=np.float64)
    assert np.abs(layer.W).max() <= limit
    # A uniform variable on [-a, a] has standard deviation a / sqrt(3).
    assert abs(layer.W.std() - limit / np.sqrt(3.0)) < 0.02 * limit
    assert np.abs(layer.W).max() > 0.99 * limit


def test_dense_default_dtype_is_float32_and_float64_is_available():
    rng = np.random.default_rng(0)
    assert Dense(3, 2, rng=rng).W.dtype == np.float32
    assert Dense(3, 2, rng=rng).b.dtype == np.float32
    assert Dense(3, 2, rng=rng, dtype=np.float64).W.dtype == np.float64


def test_dense_rejects_unknown_init():
    with pytest.raises(ValueError, match=r"init must be one of he, glorot; got 'xavier'"):
        Dense(3, 2, rng=np.random.default_rng(0), init="xavier")


@pytest.mark.parametrize("init", ["he", "glorot"])
def test_dense_gradients_match_central_differences(init):
    rng = np.random.default_rng(3)
    layer = Dense(5, 4, rng=rng, init=init, dtype=np.float64)
    layer.b[:] = rng.standard_normal(4)
    X = rng.standard_normal((6, 5))
    R = rng.standard_normal((6, 4))

    def f() -> float:
        return float(np.sum(layer.forward(X) * R))

    layer.forward(X)
    dX = layer.backward(R)
    dW, db = layer.dW.copy(), layer.db.copy()
    assert relative_error(dX, central_difference(f, X)) < GRAD_TOL
    assert relative_error(dW, central_difference(f, layer.W)) < GRAD_TOL
    assert relative_error(db, central_difference(f, layer.b)) < GRAD_TOL


def test_dense_backward_leaves_grad_out_untouched():
    rng = np.random.default_rng(4)
    layer = Dense(3, 2, rng=rng, dtype=np.float64)
    layer.forward(rng.standard_normal((5, 3)))
    G = rng.standard_normal((5, 2))
    G_before = G.copy()
    layer.backward(G)
    assert np.array_equal(G, G_before)


# --- Activations -----------------------------------------------------------------------------


@pytest.mark.parametrize("activation_cls", [ReLU, Tanh], ids=["relu", "tanh"])
def test_activation_gradient_matches_central_differences(activation_cls):
    rng = np.random.default_rng(5)
    activation = activation_cls()
    X = rng.standard_normal((6, 5))
    X[np.abs(X) < 1e-3] = 0.5  # keep the ReLU kink outside the difference interval
    R = rng.standard_normal((6, 5))

    def f() -> float:
        return float(np.sum(activation.forward(X.copy()) * R))

    activation.forward(X.copy())
    grad = activation.backward(R)
    assert relative_error(grad, central_difference(f, X)) < GRAD_TOL


def test_relu_and_tanh_forward_values_are_closed_forms():
    Z = np.array([[-2.0, -0.0, 0.0, 0.3, 4.0]])
    np.testing.assert_array_equal(ReLU().forward(Z.copy()), [[0.0, 0.0, 0.0, 0.3, 4.0]])
    np.testing.assert_allclose(
        Tanh().forward(Z.copy()),
        (np.exp(2 * Z) - 1) / (np.exp(2 * Z) + 1),
        rtol=0,
        atol=1e-15,
    )


def test_relu_derivative_is_zero_at_the_kink():
    relu = ReLU()
    relu.forward(np.array([[-1.0, 0.0, 1.0]]))
    np.testing.assert_array_equal(relu.backward(np.ones((1, 3))), [[0.0, 0.0, 1.0]])


def test_tanh_derivative_is_one_minus_tanh_squared():
    Z = np.array([[-1.3, 0.0, 0.7, 2.5]])
    tanh = Tanh()
    tanh.forward(Z.copy())
    np.testing.assert_allclose(
        tanh.backward(np.ones_like(Z)), 1.0 / np.cosh(Z) ** 2, rtol=0, atol=1e-15
    )


@pytest.mark.parametrize("activation_cls", [ReLU, Tanh], ids=["relu", "tanh"])
def test_inplace_forward_gives_the_same_output_and_gradient(activation_cls):
    rng = np.random.default_rng(6)
    Z = rng.standard_normal((4, 3))
    G = rng.standard_normal((4, 3))
    plain, inplace = activation_cls(), activation_cls()
    out_plain = plain.forward(Z.copy())
    out_inplace = inplace.forward(Z.copy(), inplace=True)
    assert np.array_equal(out_plain, out_inplace)
    assert np.array_equal(plain.backward(G), inplace.backward(G))


# --- Dropout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_training_zeroes_fraction_p_and_preserves_the_mean(p):
    X = np.ones((20000, 50))
    out = Dropout(p).forward(X, training=True, rng=np.random.default_rng(7))
    assert abs(np.mean(out == 0.0) - p) <= 0.01
    assert abs(out.mean() - 1.0) <= 0.02
    # Kept units are scaled by exactly 1 / (1 - p).
    np.testing.assert_allclose(np.unique(out[out != 0.0]), [1.0 / (1.0 - p)], rtol=1e-15)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_dropout_is_the_identity_in_evaluation(p):
    X = np.random.default_rng(8).standard_normal((30, 7))
    out = Dropout(p).forward(X, training=False, rng=np.random.default_rng(0))
    assert np.array_equal(out, X)


def test_dropout_evaluation_draws_no_random_numbers():
    rng = np.random.default_rng(9)
    untouched = np.random.default_rng(9)
    Dropout(0.5).forward(np.ones((10, 4)), training=False, rng=rng)
    assert rng.bit_generator.state == untouched.bit_generator.state


def test_dropout_backward_is_the_scaled_mask_of_the_forward_pass():
    X = np.arange(12, dtype=np.float64).reshape(3, 4) + 1.0
    p = 0.5
    dropout = Dropout(p)
    out = dropout.forward(X, training=True, rng=np.random.default_rng(1234))
    dX = dropout.backward(np.ones_like(X))
    kept = out != 0.0
    assert 0 < kept.sum() < kept.size  # the seed gives a mask with both outcomes
    np.testing.assert_array_equal(dX, kept / (1.0 - p))
    assert set(np.unique(dX)) <= {0.0, 2.0}
    assert np.all(dX[out == 0.0] == 0.0)
    np.testing.assert_array_equal(out, X * dX)


def test_dropout_frozen_mask_gradient_matches_central_differences():
    X = np.arange(12, dtype=np.float64).reshape(3, 4) + 1.0
    rng = np.random.default_rng(10)
    dropout = Dropout(0.5)
    dropout.frozen_mask = rng.random(X.shape) >= 0.5
    R = rng.standard_normal(X.shape)

    def f() -> float:
        return float(np.sum(dropout.forward(X, training=True) * R))

    dropout.forward(X, training=True)
    dX = dropout.backward(R)
    numeric = central_difference(f, X)
    np.testing.assert_allclose(dX, numeric, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(dX, np.where(dropout.frozen_mask, 2.0 * R, 0.0))
    assert relative_error(dX, numeric) < GRAD_TOL


def test_dropout_rate_zero_is_the_identity_in_training():
    X = np.random.default_rng(11).standard_normal((5, 3))
    dropout = Dropout(0.0)
    assert np.array_equal(dropout.forward(X, training=True, rng=np.random.default_rng(0)), X)
    G = np.ones_like(X)
    assert np.array_equal(dropout.backward(G), G)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_rejects_rate_outside_zero_one(rate):
    with pytest.raises(ValueError, match=r"dropout rate must be in \[0, 1\)"):
        Dropout(rate)
