"""Weight penalties: closed-form values and gradients, and case B01 (penalties and weight decay
touch weights only, never biases)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris

from core.nn import MLP, PENALTY_KINDS, Penalty, SoftmaxCrossEntropy, TrainConfig, train
from core.nn.optimizers import make_optimizer

from .finite_differences import central_difference, relative_error

GRAD_TOL = 1e-6


def weights_away_from_zero(seed: int, shapes) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        W = rng.standard_normal(shape)
        W[np.abs(W) < 1e-2] = 0.25  # the L1 kink stays outside the difference interval
        out.append(W)
    return out


# --- values and gradients --------------------------------------------------------------------


def test_penalty_values_follow_the_documented_closed_forms():
    W1 = np.array([[1.0, -2.0], [0.5, 0.0]])
    W2 = np.array([[-3.0], [4.0]])
    abs_sum = 1 + 2 + 0.5 + 0 + 3 + 4  # 10.5
    sq_sum = 1 + 4 + 0.25 + 0 + 9 + 16  # 30.25
    lam, r = 0.2, 0.3
    assert Penalty("l1", lam).value([W1, W2]) == pytest.approx(lam * abs_sum, abs=1e-15)
    assert Penalty("l2", lam).value([W1, W2]) == pytest.approx(lam / 2 * sq_sum, abs=1e-15)
    assert Penalty("elastic_net", lam, l1_ratio=r).value([W1, W2]) == pytest.approx(
        lam * (r * abs_sum + (1 - r) / 2 * sq_sum), abs=1e-15
    )


@pytest.mark.parametrize("penalty", [Penalty(), Penalty("none", 1.0), Penalty("l2", 0.0)])
def test_inactive_penalty_has_zero_value_and_adds_no_gradient(penalty):
    W = np.ones((2, 3))
    dW = np.full((2, 3), 7.0)
    assert penalty.value([W]) == 0.0
    penalty.add_gradient(W, dW)
    assert np.array_equal(dW, np.full((2, 3), 7.0))


@pytest.mark.parametrize("kind", [k for k in PENALTY_KINDS if k != "none"])
def test_penalty_gradient_matches_central_differences(kind):
    W1, W2 = weights_away_from_zero(0, [(5, 4), (4, 3)])
    penalty = Penalty(kind, 0.3, l1_ratio=0.4)
    for W in (W1, W2):
        analytic = np.zeros_like(W)
        penalty.add_gradient(W, analytic)
        numeric = central_difference(lambda: penalty.value([W1, W2]), W)
        assert relative_error(analytic, numeric) < GRAD_TOL


def test_penalty_gradient_closed_forms_accumulate_into_dw():
    W = np.array([[1.5, -0.5], [0.0, 2.0]])
    lam, r = 0.1, 0.25
    base = np.array([[1.0, 2.0], [3.0, 4.0]])
    expected = {
        "l1": lam * np.array([[1.0, -1.0], [0.0, 1.0]]),
        "l2": lam * W,
        "elastic_net": lam * (r * np.array([[1.0, -1.0], [0.0, 1.0]]) + (1 - r) * W),
    }
    for kind, grad in expected.items():
        dW = base.copy()
        Penalty(kind, lam, l1_ratio=r).add_gradient(W, dW)
        np.testing.assert_allclose(dW, base + grad, rtol=0, atol=1e-15)


def test_l1_subgradient_is_zero_at_zero_weights():
    W = np.zeros((3, 2))
    dW = np.zeros((3, 2))
    Penalty("l1", 0.5).add_gradient(W, dW)
    assert np.array_equal(dW, np.zeros((3, 2)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "l3"}, r"penalty kind must be one of none, l1, l2, elastic_net; got 'l3'"),
        ({"kind": "l2", "strength": -0.1}, r"penalty strength must be a finite number >= 0"),
        ({"kind": "l2", "strength": float("nan")}, r"penalty strength must be a finite number"),
        ({"kind": "l2", "strength": float("inf")}, r"penalty strength must be a finite number"),
        ({"kind": "elastic_net", "l1_ratio": 1.5}, r"l1_ratio must be in \[0, 1\]; got 1.5"),
    ],
)
def test_penalty_rejects_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Penalty(**kwargs)


# --- B01: biases are never penalised or decayed ----------------------------------------------


@pytest.fixture(scope="module")
def iris_batch():
    X, y = load_iris(return_X_y=True)
    rows = [0, 1, 2, 3, 50, 51, 52, 53]  # classes 0 and 1: labels fit the two outputs
    return X[rows].copy(), y[rows].copy()


def b01_model() -> MLP:
    model = MLP(4, (3,), 2, activation="relu", seed=11, dtype=np.float64)
    for i, layer in enumerate(model.dense):
        layer.b[:] = 0.1 * (i + 1)
    return model


def gradients_as_the_trainer_computes_them(model: MLP, X, y, penalty: Penalty):
    """Forward, loss, backward, then the penalty gradient on weights (trainer._run_epoch)."""
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.forward(model.forward(X, training=True), y)
    model.backward(loss_fn.backward())
    for p in model.parameters:
        if p.is_weight:
            penalty.add_gradient(p.value, p.grad)
    return {p.name: p.grad.copy() for p in model.parameters}


@pytest.mark.parametrize("lam", [0.1, 0.7])
def test_l2_gradient_adds_lam_w_to_weights_and_nothing_to_biases(iris_batch, lam):
    X, y = iris_batch
    model = b01_model()
    with_penalty = gradients_as_the_trainer_computes_them(model, X, y, Penalty("l2", lam))
    without = gradients_as_the_trainer_computes_them(model, X, y, Penalty("l2", 0.0))
    for i, layer in enumerate(model.dense):
        np.testing.assert_allclose(
            with_penalty[f"W{i}"] - without[f"W{i}"], lam * layer.W, rtol=0, atol=1e-10
        )
        assert np.array_equal(with_penalty[f"b{i}"] - without[f"b{i}"], np.zeros_like(layer.b))


def test_l1_gradient_adds_lam_sign_w_to_weights_and_nothing_to_biases(iris_batch):
    X, y = iris_batch
    lam = 0.1
    model = b01_model()
    with_penalty = gradients_as_the_trainer_computes_them(model, X, y, Penalty("l1", lam))
    without = gradients_as_the_trainer_computes_them(model, X, y, Penalty("l1", 0.0))
    for i, layer in enumerate(model.dense):
        np.testing.assert_allclose(
            with_penalty[f"W{i}"] - without[f"W{i}"], lam * np.sign(layer.W), rtol=0, atol=1e-10
        )
        assert np.array_equal(with_penalty[f"b{i}"] - without[f"b{i}"], np.zeros_like(layer.b))


@pytest.mark.parametrize("kind", ["l1", "l2", "elastic_net"])
def test_penalty_value_ignores_biases(kind):
    model = b01_model()
    penalty = Penalty(kind, 0.1)
    for layer in model.dense:
        layer.b[:] = 0.0
    at_zero = penalty.value(model.weights)
    for layer in model.dense:
        layer.b[:] = 100.0
    assert penalty.value(model.weights) == at_zero
    expected = {
        "l1": 0.1 * sum(np.abs(W).sum() for W in model.weights),
        "l2": 0.05 * sum((W**2).sum() for W in model.weights),
        "elastic_net": 0.1
        * sum(0.5 * np.abs(W).sum() + 0.25 * (W**2).sum() for W in model.weights),
    }[kind]
    assert at_zero == pytest.approx(expected, abs=1e-12)


def test_decoupled_weight_decay_shrinks_weights_by_lr_decay_w_and_leaves_biases(iris_batch):
    X, y = iris_batch
    lr, decay = 0.05, 0.3
    decayed, plain = b01_model(), b01_model()
    before = {p.name: p.value.copy() for p in decayed.parameters}
    for model, wd in ((decayed, decay), (plain, 0.0)):
        gradients_as_the_trainer_computes_them(model, X, y, Penalty())
        make_optimizer("sgd", learning_rate=lr, weight_decay=wd).step(model.parameters)
    for p_decayed, p_plain in zip(decayed.parameters, plain.parameters, strict=True):
        if p_decayed.is_weight:
            np.testing.assert_allclose(
                p_plain.value - p_decayed.value,
                lr * decay * before[p_decayed.name],
                rtol=0,
                atol=1e-15,
            )
        else:
            assert np.array_equal(p_decayed.value, p_plain.value)


@pytest.mark.parametrize(
    ("penalty", "weight_decay"), [(Penalty("l2", 0.2), 0.0), (Penalty(), 0.2)], ids=["l2", "wd"]
)
def test_trainer_one_sgd_step_pulls_weights_only(iris_batch, penalty, weight_decay):
    # One full-batch SGD step through core.nn.train: both L2 and weight decay subtract
    # lr * 0.2 * W0 from the weights and leave the biases bitwise equal to the plain run.
    X, y = iris_batch
    lr = 0.1
    initial = [W.copy() for W in b01_model().weights]
    runs = {}
    for name, pen, wd in (("reg", penalty, weight_decay), ("plain", Penalty(), 0.0)):
        model = b01_model()
        config = TrainConfig(
            max_epochs=1,
            batch_size=len(X),
            optimizer="sgd",
            learning_rate=lr,
            penalty=pen,
            weight_decay=wd,
            seed=3,
        )
        train(model, X, y, X, y, config)
        runs[name] = model
    for W_reg, W_plain, W0 in zip(
        runs["reg"].weights, runs["plain"].weights, initial, strict=True
    ):
        np.testing.assert_allclose(W_plain - W_reg, lr * 0.2 * W0, rtol=0, atol=1e-12)
    for layer_reg, layer_plain in zip(runs["reg"].dense, runs["plain"].dense, strict=True):
        assert np.array_equal(layer_reg.b, layer_plain.b)
