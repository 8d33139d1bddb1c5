"""Weight penalties: value and gradient, applied to weight matrices only, never to biases.

Convention (one for every kind, with ``lam`` the strength and sums over every weight entry):

- ``l1``:          ``lam * sum |W|``                                gradient ``lam * sign(W)``
- ``l2``:          ``lam / 2 * sum W^2``                            gradient ``lam * W``
- ``elastic_net``: ``lam * (r * sum |W| + (1 - r) / 2 * sum W^2)``  gradient
  ``lam * (r * sign(W) + (1 - r) * W)``, with ``r`` the l1 ratio

The one half on the squared norm makes the L2 gradient ``lam * W``, the same pull that
decoupled weight decay of strength ``lam`` applies (see ``optimizers``). ``sign(0) = 0``: the
L1 subgradient at zero is zero. The penalty is added to the mean data loss of a batch, so
the regularized loss is ``data_loss + penalty(W)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PENALTY_KINDS = ("none", "l1", "l2", "elastic_net")


@dataclass(frozen=True)
class Penalty:
    """A weight penalty of one kind and strength.

    Args:
        kind: One of ``none``, ``l1``, ``l2``, ``elastic_net``.
        strength: ``lam >= 0``.
        l1_ratio: Share of L1 in the elastic net, in ``[0, 1]``; ignored by other kinds.
    """

    kind: str = "none"
    strength: float = 0.0
    l1_ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in PENALTY_KINDS:
            raise ValueError(
                f"penalty kind must be one of {', '.join(PENALTY_KINDS)}; got {self.kind!r}"
            )
        if not (np.isfinite(self.strength) and self.strength >= 0):
            raise ValueError(
                f"penalty strength must be a finite number >= 0; got {self.strength!r}"
            )
        if not 0.0 <= self.l1_ratio <= 1.0:
            raise ValueError(f"l1_ratio must be in [0, 1]; got {self.l1_ratio!r}")

    @property
    def active(self) -> bool:
        return self.kind != "none" and self.strength > 0

    def _l1_l2_weights(self) -> tuple[float, float]:
        """The coefficients ``(a, c)`` in ``a * sum|W| + c / 2 * sum W^2``."""
        if self.kind == "l1":
            return self.strength, 0.0
        if self.kind == "l2":
            return 0.0, self.strength
        if self.kind == "elastic_net":
            return self.strength * self.l1_ratio, self.strength * (1.0 - self.l1_ratio)
        return 0.0, 0.0

    def value(self, weights: Sequence[np.ndarray]) -> float:
        """Penalty summed over the weight matrices (pass weights only, never biases)."""
        if not self.active:
            return 0.0
        a, c = self._l1_l2_weights()
        total = 0.0
        for W in weights:
            if a:
                total += a * float(np.abs(W).sum(dtype=np.float64))
            if c:
                total += 0.5 * c * float(np.square(W).sum(dtype=np.float64))
        return total

    def add_gradient(self, W: np.ndarray, dW: np.ndarray) -> None:
        """Add the penalty's gradient with respect to ``W`` into ``dW`` (an accumulator)."""
        if not self.active:
            return
        a, c = self._l1_l2_weights()
        if a:
            dW += a * np.sign(W)
        if c:
            dW += c * W
