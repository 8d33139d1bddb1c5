"""SGD, momentum and Adam against their textbook updates; decoupled weight decay versus an L2
penalty; argument validation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from core.nn import MLP, OPTIMIZERS, Penalty, TrainConfig, make_optimizer, train
from core.nn.optimizers import SGD, Adam, Momentum, Parameter


def make_params(seed: int = 0):
    rng = np.random.default_rng(seed)
    W = Parameter("W0", rng.standard_normal((3, 2)), np.zeros((3, 2)), is_weight=True)
    b = Parameter("b0", rng.standard_normal(2), np.zeros(2), is_weight=False)
    return [W, b]


def set_grads(params, grads):
    for p, g in zip(params, grads, strict=True):
        p.grad[...] = g


def random_grads(seed: int):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((3, 2)), rng.standard_normal(2)]


def test_sgd_step_is_theta_minus_lr_g():
    params = make_params()
    theta0 = [p.value.copy() for p in params]
    g = random_grads(1)
    set_grads(params, g)
    SGD(learning_rate=0.1).step(params)
    for p, t0, gi in zip(params, theta0, g, strict=True):
        np.testing.assert_allclose(p.value, t0 - 0.1 * gi, rtol=0, atol=1e-15)


def test_momentum_two_steps_follow_the_heavy_ball_closed_form():
    lr, mu = 0.1, 0.9
    params = make_params()
    theta0 = [p.value.copy() for p in params]
    g1, g2 = random_grads(1), random_grads(2)
    optimizer = Momentum(learning_rate=lr, momentum=mu)
    set_grads(params, g1)
    optimizer.step(params)
    for p, t0, a in zip(params, theta0, g1, strict=True):
        np.testing.assert_allclose(p.value, t0 - lr * a, rtol=0, atol=1e-14)
    set_grads(params, g2)
    optimizer.step(params)
    # v1 = -lr g1, v2 = mu v1 - lr g2, theta2 = theta0 + v1 + v2.
    for p, t0, a, b in zip(params, theta0, g1, g2, strict=True):
        expected = t0 - lr * a + (-mu * lr * a - lr * b)
        np.testing.assert_allclose(p.value, expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("eps", [1e-8, 0.5])
def test_adam_two_steps_equal_the_textbook_bias_corrected_update(eps):
    lr, b1, b2 = 0.01, 0.9, 0.999
    params = make_params()
    theta = [p.value.copy() for p in params]
    m = [np.zeros_like(t) for t in theta]
    v = [np.zeros_like(t) for t in theta]
    optimizer = Adam(learning_rate=lr, beta1=b1, beta2=b2, eps=eps)
    for t, seed in ((1, 1), (2, 2)):
        g = random_grads(seed)
        set_grads(params, g)
        optimizer.step(params)
        for i, gi in enumerate(g):
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi**2
            m_hat = m[i] / (1 - b1**t)
            v_hat = v[i] / (1 - b2**t)
            theta[i] = theta[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
        for p, expected in zip(params, theta, strict=True):
            np.testing.assert_allclose(p.value, expected, rtol=1e-12, atol=1e-15)


def test_adam_first_step_moves_each_entry_by_about_lr():
    # With m_hat = g and v_hat = g^2 the first step is lr * sign(g) (up to eps).
    params = make_params()
    theta0 = [p.value.copy() for p in params]
    g = random_grads(3)
    set_grads(params, g)
    Adam(learning_rate=0.01).step(params)
    for p, t0, gi in zip(params, theta0, g, strict=True):
        np.testing.assert_allclose(t0 - p.value, 0.01 * np.sign(gi), rtol=1e-6)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_weight_decay_shrinks_weights_before_the_update_and_never_biases(name):
    lr, decay = 0.1, 0.5
    params = make_params()
    theta0 = [p.value.copy() for p in params]
    # Zero gradients: every optimizer's own update is zero, only the decay remains.
    make_optimizer(name, learning_rate=lr, weight_decay=decay).step(params)
    W, b = params
    np.testing.assert_allclose(W.value, theta0[0] * (1 - lr * decay), rtol=0, atol=1e-15)
    assert np.array_equal(b.value, theta0[1])


def test_adam_weight_decay_is_applied_outside_the_adaptive_scaling():
    lr, decay = 0.01, 0.1
    params = make_params()
    theta0 = [p.value.copy() for p in params]
    g = random_grads(4)
    set_grads(params, g)
    Adam(learning_rate=lr, weight_decay=decay).step(params)
    W, b = params
    # First Adam step: m_hat / (sqrt(v_hat) + eps) with m_hat = g, v_hat = g^2.
    adam_step = [gi / (np.abs(gi) + 1e-8) for gi in g]
    np.testing.assert_allclose(
        W.value, theta0[0] * (1 - lr * decay) - lr * adam_step[0], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(b.value, theta0[1] - lr * adam_step[1], rtol=0, atol=1e-12)


def test_sgd_step_with_l2_gradient_equals_step_with_weight_decay():
    lr, lam = 0.05, 0.3
    g = random_grads(5)
    with_l2, with_decay = make_params(), make_params()
    theta0 = [p.value.copy() for p in with_l2]
    # L2: the penalty gradient lam * W is added to the weight gradient only.
    set_grads(with_l2, [g[0] + lam * theta0[0], g[1]])
    SGD(learning_rate=lr).step(with_l2)
    set_grads(with_decay, g)
    SGD(learning_rate=lr, weight_decay=lam).step(with_decay)
    closed_form_W = theta0[0] - lr * (g[0] + lam * theta0[0])
    np.testing.assert_allclose(with_l2[0].value, closed_form_W, rtol=0, atol=1e-15)
    np.testing.assert_allclose(with_decay[0].value, closed_form_W, rtol=0, atol=1e-15)
    assert np.array_equal(with_l2[1].value, with_decay[1].value)


@pytest.fixture(scope="module")
def digits_small():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return X[:300], y[:300], X[300:500], y[300:500]


def _train_weights(data, optimizer: str, penalty: Penalty, weight_decay: float, epochs: int):
    X_tr, y_tr, X_va, y_va = data
    model = MLP(64, (32,), 10, seed=0, dtype=np.float64)
    config = TrainConfig(
        max_epochs=epochs,
        batch_size=len(X_tr) if optimizer == "sgd" else 32,
        optimizer=optimizer,
        learning_rate=1e-3 if optimizer == "adam" else 0.1,
        penalty=penalty,
        weight_decay=weight_decay,
        seed=1,
    )
    train(model, X_tr, y_tr, X_va, y_va, config)
    return model.get_state(), model


def test_adam_decoupled_weight_decay_differs_from_l2_penalty(digits_small):
    l2, _ = _train_weights(digits_small, "adam", Penalty("l2", 1e-2), 0.0, epochs=4)
    wd, _ = _train_weights(digits_small, "adam", Penalty(), 1e-2, epochs=4)
    plain, _ = _train_weights(digits_small, "adam", Penalty(), 0.0, epochs=4)
    max_diff = max(np.abs(a - b).max() for a, b in zip(l2, wd, strict=True))
    assert max_diff > 1e-4
    # Both regularize: neither equals the unregularized run.
    assert max(np.abs(a - b).max() for a, b in zip(wd, plain, strict=True)) > 0
    assert max(np.abs(a - b).max() for a, b in zip(l2, plain, strict=True)) > 0


def test_trainer_sgd_step_with_l2_equals_step_with_weight_decay(digits_small):
    # One full-batch SGD step (no momentum): W - lr * (g + lam * W) either way.
    l2, _ = _train_weights(digits_small, "sgd", Penalty("l2", 1e-2), 0.0, epochs=1)
    wd, _ = _train_weights(digits_small, "sgd", Penalty(), 1e-2, epochs=1)
    for a, b in zip(l2, wd, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("learning_rate", [0.0, -1e-3, float("nan"), float("inf")])
def test_invalid_learning_rate_raises_value_error_naming_it(name, learning_rate):
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number > 0; got"):
        make_optimizer(name, learning_rate=learning_rate)


@pytest.mark.parametrize("weight_decay", [-0.1, float("nan")])
def test_invalid_weight_decay_raises_value_error_naming_it(weight_decay):
    with pytest.raises(ValueError, match=r"weight_decay must be a finite number >= 0; got"):
        SGD(learning_rate=0.1, weight_decay=weight_decay)


def test_invalid_momentum_and_betas_raise_value_error_naming_them():
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\); got 1.0"):
        Momentum(learning_rate=0.1, momentum=1.0)
    with pytest.raises(ValueError, match=r"beta1 must be in \[0, 1\); got 1.0"):
        Adam(learning_rate=0.1, beta1=1.0)
    with pytest.raises(ValueError, match=r"beta2 must be in \[0, 1\); got -0.5"):
        Adam(learning_rate=0.1, beta2=-0.5)


def test_unknown_optimizer_name_raises_value_error():
    with pytest.raises(ValueError, match=r"optimizer must be one of sgd, momentum, adam"):
        make_optimizer("rmsprop", learning_rate=0.1)
