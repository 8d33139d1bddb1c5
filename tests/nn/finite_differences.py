"""The test suite's own finite-difference helpers, written apart from core.nn.gradcheck so
the gradient checks do not rest on the code they check."""

from __future__ import annotations

import numpy as np


def central_difference(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every entry of ``x`` (perturbed in place)."""
    grad = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        saved = x[idx]
        x[idx] = saved + h
        upper = f()
        x[idx] = saved - h
        lower = f()
        x[idx] = saved
        grad[idx] = (upper - lower) / (2.0 * h)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    denominator = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / max(denominator, 1e-300))
