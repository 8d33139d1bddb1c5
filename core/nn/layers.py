"""Layers of the multilayer perceptron, each with its forward and backward pass side by side.

Conventions: a batch ``X`` has shape ``(n, d_in)``; ``grad_out`` is the gradient of the loss
with respect to a layer's output, shape ``(n, d_out)``; ``backward`` returns the gradient
with respect to the layer's input and never modifies ``grad_out`` in place.
"""

from __future__ import annotations

import numpy as np

INITS = ("he", "glorot")


class Dense:
    """Affine layer ``Z = X @ W + b``.

    Args:
        n_in: Input width.
        n_out: Output width.
        rng: Generator used once, for initialisation.
        init: ``"he"`` (normal, std ``sqrt(2 / n_in)``, for ReLU) or ``"glorot"``
            (uniform in ``+-sqrt(6 / (n_in + n_out))``, for tanh and linear outputs).
        dtype: Floating dtype of parameters and gradients.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        rng: np.random.Generator,
        init: str = "he",
        dtype: np.dtype | type = np.float32,
    ) -> None:
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")

        if init == "he":
            W = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        else:
            limit = np.sqrt(6.0 / (n_in + n_out))
            W = rng.uniform(-limit, limit, size=(n_in, n_out))
        self.W = W.astype(dtype)  # (n_in, n_out)
        self.b = np.zeros(n_out, dtype=dtype)  # (n_out,)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self.needs_input_grad = True
        self._X: np.ndarray | None = None
        self._ones = np.ones(0, dtype=dtype)  # (n,), grown on demand: db as one GEMV

    def bind(self, W: np.ndarray, b: np.ndarray, dW: np.ndarray, db: np.ndarray) -> None:
        """Move parameters and gradients into caller-owned buffers (views of one flat array,
        so an optimizer can update every weight with a few whole-array operations)."""
        W[...], b[...] = self.W, self.b
        self.W, self.b, self.dW, self.db = W, b, dW, db

    def forward(self, X: np.ndarray) -> np.ndarray:
        self._X = X
        Z = X @ self.W  # (n, n_out)
        Z += self.b
        return Z

    def clear(self) -> None:
        """Drop the cached input, so a fitted model holds no training data."""
        self._X = None

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        # dW = X^T G, db = 1^T G, dX = G W^T; the first layer skips dX (nobody reads it).
        # The column sums go through BLAS as a matrix-vector product: a few times faster
        # than np.sum(axis=0) on a batch, and equal up to the order of float additions.
        n = len(grad_out)
        if len(self._ones) < n:
            self._ones = np.ones(n, dtype=self.b.dtype)
        np.matmul(self._X.T, grad_out, out=self.dW)
        np.matmul(self._ones[:n], grad_out, out=self.db)
        if not self.needs_input_grad:
            return None
        return grad_out @ self.W.T


class ReLU:
    """``relu(z) = max(z, 0)``; derivative 1 where ``z > 0`` and 0 elsewhere (0 at the kink)."""

    def __init__(self) -> None:
        self._positive: np.ndarray | None = None
        self._zeros: np.ndarray | None = None  # kept across batches and clear(): not data

    def forward(self, Z: np.ndarray, *, inplace: bool = False) -> np.ndarray:
        # The model passes inplace=True for the fresh output of a Dense layer: one array fewer.
        self._positive = Z > 0
        # The maximum against an array of zeros, not the scalar 0: NumPy vectorizes the
        # array-array loop only, about four times faster, with the same values (NaN
        # propagates, -0.0 becomes 0.0).
        zeros = self._zeros
        if (
            zeros is None
            or zeros.dtype != Z.dtype
            or zeros.shape[1:] != Z.shape[1:]
            or len(zeros) < len(Z)
        ):
            zeros = self._zeros = np.zeros(Z.shape, dtype=Z.dtype)
        return np.maximum(Z, zeros[: len(Z)], out=Z if inplace else None)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._positive

    def clear(self) -> None:
        self._positive = None


class Tanh:
    """``tanh(z)``; derivative ``1 - tanh(z)^2``."""

    def __init__(self) -> None:
        self._A: np.ndarray | None = None

    def forward(self, Z: np.ndarray, *, inplace: bool = False) -> np.ndarray:
        self._A = np.tanh(Z, out=Z if inplace else None)
        return self._A

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * (1.0 - self._A * self._A)

    def clear(self) -> None:
        self._A = None


ACTIVATIONS = {"relu": ReLU, "tanh": Tanh}


class Dropout:
    """Inverted dropout: in training ``out = X * mask / (1 - rate)``, mask ~ Bernoulli(1 - rate).

    In evaluation the layer is the identity, so predictions need no rescaling and draw no
    random numbers. ``frozen_mask`` replaces the random draw (used by gradient checks).

    Args:
        rate: Probability of zeroing a unit, in ``[0, 1)``.
    """

    def __init__(self, rate: float) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1); got {rate!r}")

        self.rate = float(rate)
        self.frozen_mask: np.ndarray | None = None
        self._scaled_mask: np.ndarray | None = None

    def forward(
        self, X: np.ndarray, *, training: bool, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        if not training or self.rate == 0.0:
            self._scaled_mask = None
            return X
        if self.frozen_mask is not None:
            keep = self.frozen_mask
        else:
            keep = rng.random(X.shape, dtype=X.dtype) >= self.rate  # (n, d) booleans
        # One multiply by the pre-scaled mask: 0 for dropped units, 1 / (1 - rate) for kept ones.
        self._scaled_mask = keep * X.dtype.type(1.0 / (1.0 - self.rate))
        return X * self._scaled_mask

    def clear(self) -> None:
        self._scaled_mask = None

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._scaled_mask is None:
            return grad_out
        return grad_out * self._scaled_mask
