"""Whole-network gradients against central differences of an independently computed
objective, and the package's own checker (``core.nn.gradcheck``), including that it fails
on a gradient broken on purpose."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from core.nn import (
    MLP,
    PENALTY_KINDS,
    MeanSquaredError,
    Penalty,
    SoftmaxCrossEntropy,
    gradcheck,
)
from core.nn.layers import ReLU, Tanh

from .finite_differences import central_difference, relative_error

GRAD_TOL = 1e-6
BROKEN = 1e-3


def reference_output(model: MLP, X: np.ndarray, masks) -> np.ndarray:
    """The network written out with plain NumPy: [affine, activation, dropout]*, affine."""
    act = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh}[model.activation]
    A = X
    for i, layer in enumerate(model.dense[:-1]):
        A = act(A @ layer.W + layer.b)
        if masks is not None:
            A = A * masks[i] / (1.0 - model.dropout_rate)
    return A @ model.dense[-1].W + model.dense[-1].b


def reference_objective(model, X, y, loss, penalty_kind, lam, ratio, masks) -> float:
    z = reference_output(model, X, masks)
    if loss == "cross_entropy":
        data = float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))
    else:
        data = float(np.mean((z - y) ** 2))
    abs_sum = sum(np.abs(W).sum() for W in model.weights)
    sq_sum = sum((W**2).sum() for W in model.weights)
    extra = {
        "none": 0.0,
        "l1": lam * abs_sum,
        "l2": lam / 2 * sq_sum,
        "elastic_net": lam * (ratio * abs_sum + (1 - ratio) / 2 * sq_sum),
    }[penalty_kind]
    return data + extra


def build_network(activation: str, dropout_rate: float, k: int, seed: int) -> MLP:
    rng = np.random.default_rng(seed)
    model = MLP(
        5, (7, 6), k, activation=activation, dropout_rate=dropout_rate, seed=rng, dtype=np.float64
    )
    for layer in model.dense:
        layer.b[:] = 0.1 * rng.standard_normal(layer.b.shape)
    return model


def freeze_masks(model: MLP, n: int, seed: int):
    """Freeze one Bernoulli(1 - rate) keep-mask per dropout layer; None without dropout."""
    if model.dropout_rate == 0:
        return None
    rng = np.random.default_rng(seed)
    masks = []
    for dropout, width in zip(model.dropouts, model.widths[1:-1], strict=True):
        keep = rng.random((n, width)) >= model.dropout_rate
        dropout.frozen_mask = keep
        masks.append(keep)
    return masks


def analytic_gradients(model, X, y, loss, penalty):
    """Exactly the trainer's sequence: forward, loss, backward, penalty gradient on weights."""
    loss_fn = SoftmaxCrossEntropy() if loss == "cross_entropy" else MeanSquaredError()
    loss_fn.forward(model.forward(X, training=model.dropout_rate > 0), y)
    model.backward(loss_fn.backward())
    for p in model.parameters:
        if p.is_weight:
            penalty.add_gradient(p.value, p.grad)
    return {p.name: p.grad.copy() for p in model.parameters}


NETWORK_CASES = list(
    itertools.product(("relu", "tanh"), ("cross_entropy", "mse"), PENALTY_KINDS, (0.0, 0.3))
)


@pytest.mark.parametrize(("activation", "loss", "kind", "dropout_rate"), NETWORK_CASES)
def test_network_gradients_match_central_differences(activation, loss, kind, dropout_rate):
    rng = np.random.default_rng(42)
    X = rng.standard_normal((8, 5))
    k = 3 if loss == "cross_entropy" else 2
    y = rng.integers(0, 3, 8) if loss == "cross_entropy" else rng.standard_normal((8, 2))
    lam, ratio = (0.05 if kind != "none" else 0.0), 0.4
    model = build_network(activation, dropout_rate, k, seed=7)
    masks = freeze_masks(model, len(X), seed=8)
    analytic = analytic_gradients(model, X, y, loss, Penalty(kind, lam, l1_ratio=ratio))
    for p in model.parameters:
        numeric = central_difference(
            lambda: reference_objective(model, X, y, loss, kind, lam, ratio, masks), p.value
        )
        assert relative_error(analytic[p.name], numeric) < GRAD_TOL, p.name


def test_two_hidden_layer_network_with_frozen_dropout_mask_passes_gradient_check():
    # Case B04 at network level: 2 hidden layers, dropout 0.3, masks frozen.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 5))
    y = rng.integers(0, 4, 10)
    model = build_network("relu", 0.3, 4, seed=1)
    masks = freeze_masks(model, len(X), seed=2)
    assert all(0 < m.sum() < m.size for m in masks)
    analytic = analytic_gradients(model, X, y, "cross_entropy", Penalty())
    errors = {}
    for p in model.parameters:
        numeric = central_difference(
            lambda: reference_objective(model, X, y, "cross_entropy", "none", 0, 0, masks),
            p.value,
        )
        errors[p.name] = relative_error(analytic[p.name], numeric)
    assert set(errors) == {"W0", "b0", "W1", "b1", "W2", "b2"}
    assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("dropout_rate", [0.0, 0.3])
def test_model_forward_matches_an_independent_numpy_forward(activation, dropout_rate):
    X = np.random.default_rng(3).standard_normal((8, 5))
    model = build_network(activation, dropout_rate, 3, seed=4)
    masks = freeze_masks(model, len(X), seed=5)
    np.testing.assert_allclose(
        model.forward(X, training=dropout_rate > 0),
        reference_output(model, X, masks),
        rtol=0,
        atol=1e-13,
    )


# --- core.nn.gradcheck ----------------------------------------------------------------------


def test_package_numeric_gradient_matches_closed_form_derivative():
    x = np.array([[0.5, -1.0], [2.0, 0.25]])
    numeric = gradcheck.numeric_gradient(lambda: float(np.sum(x**3)), x)
    np.testing.assert_allclose(numeric, 3 * x**2, rtol=1e-8)
    assert gradcheck.relative_error(3 * x**2, 3 * x**2) == 0.0
    assert gradcheck.relative_error(2 * x, x) == pytest.approx(1 / 3, rel=1e-12)


def test_run_all_passes_every_component_and_network():
    results = gradcheck.run_all()
    names = [r.name for r in results]
    for expected in (
        "dense[he] W",
        "dense[glorot] W",
        "relu input",
        "tanh input",
        "dropout (frozen mask) input",
        "loss cross_entropy",
        "loss mse",
        "penalty l1",
        "penalty l2",
        "penalty elastic_net",
    ):
        assert expected in names
    assert sum(name.startswith("mlp ") for name in names) == 2 * 4 * 2 * 2
    failing = {r.name: r.error for r in results if not (r.passed and r.error < GRAD_TOL)}
    assert failing == {}


def test_run_all_detects_tanh_backward_without_its_derivative_factor(monkeypatch):
    monkeypatch.setattr(Tanh, "backward", lambda self, grad_out: grad_out.copy())
    errors = {r.name: r.error for r in gradcheck.run_all()}
    assert errors["tanh input"] > BROKEN
    tanh_nets = [e for name, e in errors.items() if name.startswith("mlp tanh")]
    assert tanh_nets and min(tanh_nets) > BROKEN
    relu_nets = [e for name, e in errors.items() if name.startswith("mlp relu")]
    assert max(relu_nets) < GRAD_TOL


def test_run_all_detects_relu_gradient_scaled_by_two(monkeypatch):
    correct = ReLU.backward
    monkeypatch.setattr(ReLU, "backward", lambda self, grad_out: 2.0 * correct(self, grad_out))
    results = gradcheck.run_all()
    errors = {r.name: r.error for r in results}
    # Analytic 2g against numeric g: relative error |g| / 3|g| = 1/3.
    assert errors["relu input"] == pytest.approx(1 / 3, rel=1e-6)
    failed = [r for r in results if r.name.startswith("mlp relu") and not r.passed]
    assert len(failed) == 16
    assert min(r.error for r in failed) > BROKEN


def test_check_model_detects_a_penalty_gradient_with_the_wrong_factor(monkeypatch):
    def doubled(self, W, dW):
        dW += 2.0 * self.strength * W  # lam * W is correct for lam / 2 * sum W^2

    model = build_network("tanh", 0.0, 3, seed=9)
    rng = np.random.default_rng(10)
    X, y = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    good = gradcheck.check_model(model, X, y, penalty=Penalty("l2", 0.5))
    assert max(good.values()) < GRAD_TOL
    monkeypatch.setattr(Penalty, "add_gradient", doubled)
    bad = gradcheck.check_model(model, X, y, penalty=Penalty("l2", 0.5))
    assert max(bad[name] for name in ("W0", "W1", "W2")) > BROKEN
