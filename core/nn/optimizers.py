"""Gradient-descent updates: SGD, momentum and Adam, each with optional decoupled weight decay.

Decoupled weight decay (Loshchilov and Hutter, "Decoupled Weight Decay Regularization")
shrinks weights in the update step, ``W <- W - lr * decay * W``, outside the gradient. With
plain SGD that equals an L2 penalty of the same strength; with Adam it does not, because
the L2 gradient ``lam * W`` is divided by Adam's running gradient scale while the decoupled
shrink is not. Biases are never decayed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass
class Parameter:
    """One trainable array with its gradient buffer; ``is_weight`` is False for biases.

    ``decayed`` marks the part of a flat array that holds weights (decoupled decay applies
    there only) when one buffer carries weights and biases together.
    """

    name: str
    value: np.ndarray
    grad: np.ndarray
    is_weight: bool
    decayed: slice | None = None


class Optimizer:
    """Base class: ``step`` applies decoupled decay to weights, then the method's update.

    Args:
        learning_rate: Step size ``lr > 0``.
        weight_decay: Decoupled decay ``decay >= 0``, applied to weights only.
    """

    def __init__(self, *, learning_rate: float, weight_decay: float = 0.0) -> None:
        if not (np.isfinite(learning_rate) and learning_rate > 0):
            raise ValueError(f"learning_rate must be a finite number > 0; got {learning_rate!r}")
        if not (np.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0; got {weight_decay!r}")

        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)

    def step(self, params: Sequence[Parameter]) -> None:
        if self.weight_decay:
            shrink = 1.0 - self.learning_rate * self.weight_decay
            for p in params:
                if p.decayed is not None:
                    p.value[p.decayed] *= shrink
                elif p.is_weight:
                    p.value *= shrink
        self._update(params)

    def _update(self, params: Sequence[Parameter]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """``theta <- theta - lr * g``."""

    def _update(self, params: Sequence[Parameter]) -> None:
        for p in params:
            p.value -= self.learning_rate * p.grad


class Momentum(Optimizer):
    """Heavy-ball momentum: ``v <- mu * v - lr * g``; ``theta <- theta + v``."""

    def __init__(
        self, *, learning_rate: float, momentum: float = 0.9, weight_decay: float = 0.0
    ) -> None:
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {momentum!r}")

        self.momentum = float(momentum)
        self._velocity: list[np.ndarray] | None = None

    def _update(self, params: Sequence[Parameter]) -> None:
        if self._velocity is None:
            self._velocity = [np.zeros_like(p.value) for p in params]
        for p, v in zip(params, self._velocity, strict=True):
            v *= self.momentum
            v -= self.learning_rate * p.grad
            p.value += v


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with bias-corrected moments.

    ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
    ``theta <- theta - lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1^t)``
    and ``v_hat = v / (1 - b2^t)``.

    Computed in an algebraically equal form with fewer passes over the parameters: the
    moments are kept as ``M = m / (1 - b1)`` and ``V = v / (1 - b2)``, so ``M <- b1 M + g``
    and ``V <- b2 V + g^2``, and the step is ``theta <- theta - s_t * M / (sqrt(V) + e_t)``
    with ``s_t = lr (1 - b1) sqrt(1 - b2^t) / ((1 - b1^t) sqrt(1 - b2))`` and
    ``e_t = eps sqrt(1 - b2^t) / sqrt(1 - b2)``.
    """

    def __init__(
        self,
        *,
        learning_rate: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay)
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {beta!r}")

        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self._t = 0
        self._m: list[np.ndarray] | None = None  # M = m / (1 - b1)
        self._v: list[np.ndarray] | None = None  # V = v / (1 - b2)
        self._scratch: list[np.ndarray] | None = None

    def _update(self, params: Sequence[Parameter]) -> None:
        if self._m is None:
            self._m = [np.zeros_like(p.value) for p in params]
            self._v = [np.zeros_like(p.value) for p in params]
            self._scratch = [np.empty_like(p.value) for p in params]
        self._t += 1
        # Python floats, not NumPy float64 scalars: a float64 scalar would promote every
        # float32 operation below to float64 (NEP 50) and make it several times slower.
        correction2 = math.sqrt(1.0 - self.beta2**self._t)
        scale2 = math.sqrt(1.0 - self.beta2)
        step_size = (
            self.learning_rate
            * (1.0 - self.beta1)
            * correction2
            / ((1.0 - self.beta1**self._t) * scale2)
        )
        eps = self.eps * correction2 / scale2
        for p, m, v, s in zip(params, self._m, self._v, self._scratch, strict=True):
            g = p.grad
            m *= self.beta1
            m += g
            v *= self.beta2
            np.multiply(g, g, out=s)
            v += s
            # s <- step_size * M / (sqrt(V) + eps), reusing the scratch buffer.
            np.sqrt(v, out=s)
            s += eps
            np.divide(m, s, out=s)
            s *= step_size
            p.value -= s


def make_optimizer(
    name: str,
    *,
    learning_rate: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> Optimizer:
    """Build an optimizer by name: ``sgd``, ``momentum`` or ``adam``."""
    if name == "sgd":
        return SGD(learning_rate=learning_rate, weight_decay=weight_decay)
    if name == "momentum":
        return Momentum(learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return Adam(learning_rate=learning_rate, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
