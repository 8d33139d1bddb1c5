"""Finite-difference gradient checks for every layer, activation, loss, penalty and network.

Each check compares an analytic gradient with central differences
``(f(x + h) - f(x - h)) / 2h`` and reports the relative error
``||g_analytic - g_numeric|| / max(||g_analytic|| + ||g_numeric||, tiny)``, per array.
Run in float64; a correct gradient scores around 1e-9, a wrong one around 1e-1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.nn.layers import ACTIVATIONS, Dense, Dropout
from core.nn.losses import LOSSES
from core.nn.model import MLP
from core.nn.penalties import PENALTY_KINDS, Penalty

TOLERANCE = 1e-6


@dataclass(frozen=True)
class CheckResult:
    """The worst relative error of one component's gradient check."""

    name: str
    error: float

    @property
    def passed(self) -> bool:
        return self.error <= TOLERANCE


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Norm-wise relative error between two gradients of the same shape."""
    scale = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return float(np.linalg.norm(analytic - numeric) / max(scale, 1e-300))


def numeric_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to every entry of ``x``.

    ``x`` is perturbed in place, one entry at a time, and restored.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + h
        upper = f()
        flat[i] = original - h
        lower = f()
        flat[i] = original
        flat_grad[i] = (upper - lower) / (2 * h)
    return grad


def freeze_dropout_masks(model: MLP, X: np.ndarray, rng: np.random.Generator) -> None:
    """Draw one dropout mask per layer for ``X`` and freeze it, so the loss is deterministic."""
    for dropout in model.dropouts:
        dropout.frozen_mask = None
    model.forward(X, training=True, rng=rng)
    for dropout in model.dropouts:
        if dropout._scaled_mask is not None:
            dropout.frozen_mask = dropout._scaled_mask > 0


def regularized_loss(
    model: MLP, X: np.ndarray, y: np.ndarray, loss_name: str, penalty: Penalty, training: bool
) -> float:
    """Mean data loss plus penalty: the scalar the trainer differentiates."""
    output = model.forward(X, training=training, rng=None)
    return LOSSES[loss_name]().forward(output, y) + penalty.value(model.weights)


def check_model(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    *,
    loss: str = "cross_entropy",
    penalty: Penalty | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Relative error of every parameter's gradient of the regularized loss.

    Dropout, when the model has it, runs in training mode with masks frozen by
    ``freeze_dropout_masks``.
    """
    penalty = penalty or Penalty()
    training = model.dropout_rate > 0
    if training:
        freeze_dropout_masks(model, X, np.random.default_rng(seed))
    try:
        loss_fn = LOSSES[loss]()
        loss_fn.forward(model.forward(X, training=training), y)
        model.backward(loss_fn.backward())
        for p in model.parameters:
            if p.is_weight:
                penalty.add_gradient(p.value, p.grad)
        analytic = {p.name: p.grad.copy() for p in model.parameters}
        errors = {}
        for p in model.parameters:
            numeric = numeric_gradient(
                lambda: regularized_loss(model, X, y, loss, penalty, training), p.value
            )
            errors[p.name] = relative_error(analytic[p.name], numeric)
        return errors
    finally:
        for dropout in model.dropouts:
            dropout.frozen_mask = None


def _check_module(name: str, module, X: np.ndarray, rng: np.random.Generator, **forward_kw):
    """Check ``d sum(out * R) / dX`` (and parameter gradients of a Dense layer)."""
    R = rng.standard_normal(module.forward(X.copy(), **forward_kw).shape)

    def f() -> float:
        return float(np.sum(module.forward(X.copy(), **forward_kw) * R))

    module.forward(X.copy(), **forward_kw)
    grad_in = module.backward(R)
    results = [CheckResult(f"{name} input", relative_error(grad_in, numeric_gradient(f, X)))]
    if isinstance(module, Dense):
        analytic_W, analytic_b = module.dW.copy(), module.db.copy()
        results.append(
            CheckResult(f"{name} W", relative_error(analytic_W, numeric_gradient(f, module.W)))
        )
        results.append(
            CheckResult(f"{name} b", relative_error(analytic_b, numeric_gradient(f, module.b)))
        )
    return results


def run_all(seed: int = 0) -> list[CheckResult]:
    """Check every component and whole networks in float64; one result per check."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((6, 5))
    results: list[CheckResult] = []

    for init in ("he", "glorot"):
        dense = Dense(5, 4, rng=rng, init=init, dtype=np.float64)
        dense.b[:] = rng.standard_normal(4)
        results += _check_module(f"dense[{init}]", dense, X, rng)
    for name, activation in ACTIVATIONS.items():
        results += _check_module(name, activation(), X, rng)
    dropout = Dropout(0.4)
    dropout.frozen_mask = rng.random(X.shape) >= 0.4
    results += _check_module("dropout (frozen mask)", dropout, X, rng, training=True)

    logits = rng.standard_normal((6, 3)) * 3
    labels = rng.integers(0, 3, 6)
    targets = rng.standard_normal((6, 2))
    for loss_name, y in (("cross_entropy", labels), ("mse", targets)):
        z = logits if loss_name == "cross_entropy" else rng.standard_normal((6, 2))
        loss_fn = LOSSES[loss_name]()
        loss_fn.forward(z, y)
        analytic = loss_fn.backward()
        numeric = numeric_gradient(lambda z=z, y=y, fn=loss_fn: fn.forward(z, y), z)
        results.append(CheckResult(f"loss {loss_name}", relative_error(analytic, numeric)))

    # Weights kept away from 0 so the L1 kink is never inside the difference interval.
    W = rng.standard_normal((5, 4))
    W[np.abs(W) < 1e-3] = 0.5
    for kind in PENALTY_KINDS[1:]:
        penalty = Penalty(kind, 0.3, l1_ratio=0.4)
        analytic = np.zeros_like(W)
        penalty.add_gradient(W, analytic)
        numeric = numeric_gradient(lambda penalty=penalty: penalty.value([W]), W)
        results.append(CheckResult(f"penalty {kind}", relative_error(analytic, numeric)))

    X_net = rng.standard_normal((8, 5))
    y_class = rng.integers(0, 3, 8)
    y_reg = rng.standard_normal((8, 2))
    for activation in ACTIVATIONS:
        for kind in PENALTY_KINDS:
            for dropout_rate in (0.0, 0.3):
                for loss_name, y, k in (("cross_entropy", y_class, 3), ("mse", y_reg, 2)):
                    model = MLP(
                        5,
                        (7, 6),
                        k,
                        activation=activation,
                        dropout_rate=dropout_rate,
                        seed=rng,
                        dtype=np.float64,
                    )
                    for layer in model.dense:
                        layer.b[:] = 0.1 * rng.standard_normal(layer.b.shape)
                    penalty = Penalty(kind, 0.05 if kind != "none" else 0.0, l1_ratio=0.5)
                    errors = check_model(model, X_net, y, loss=loss_name, penalty=penalty)
                    name = f"mlp {activation} {loss_name} penalty={kind} dropout={dropout_rate}"
                    results.append(CheckResult(name, max(errors.values())))
    return results
