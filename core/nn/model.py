"""The multilayer perceptron: a stack of Dense, activation and dropout layers.

Architecture: ``[Dense -> activation -> Dropout] * len(hidden) -> Dense``. The last layer is
linear: its outputs are logits for classification and predictions for regression. Dropout
sits after every hidden activation when ``dropout_rate > 0``; inputs and outputs are never
dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.nn.layers import ACTIVATIONS, Dense, Dropout
from core.nn.optimizers import Parameter


class MLP:
    """A fully connected network.

    Args:
        n_inputs: Input features ``d``.
        hidden: Widths of the hidden layers (may be empty: a linear model).
        n_outputs: Classes ``k`` for classification, targets for regression.
        activation: ``relu`` or ``tanh``.
        dropout_rate: Probability of dropping a hidden unit in training, in ``[0, 1)``.
        init: ``he`` or ``glorot``; by default He for ReLU and Glorot for tanh.
        seed: Seed or Generator for the initial weights.
        dtype: ``float32`` (default) or ``float64``.
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int],
        n_outputs: int,
        *,
        activation: str = "relu",
        dropout_rate: float = 0.0,
        init: str | None = None,
        seed: int | np.random.Generator | None = 0,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}"
            )
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {dtype}")
        widths = [int(n_inputs), *(int(h) for h in hidden), int(n_outputs)]
        if min(widths) < 1:
            raise ValueError(f"every layer width must be >= 1; got {widths}")

        rng = np.random.default_rng(seed)
        init = init or ("he" if activation == "relu" else "glorot")
        self.dtype = dtype
        self.activation = activation
        self.dropout_rate = float(dropout_rate)
        self.widths = tuple(widths)
        self.dense: list[Dense] = []
        self.activations: list = []
        self.dropouts: list[Dropout] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            is_output = i == len(widths) - 2
            layer = Dense(n_in, n_out, rng=rng, init="glorot" if is_output else init, dtype=dtype)
            self.dense.append(layer)
            if not is_output:
                self.activations.append(ACTIVATIONS[activation]())
                self.dropouts.append(Dropout(dropout_rate))
        self.dense[0].needs_input_grad = False
        # (Dense, activation, Dropout) per hidden layer, so each pass loops over one tuple.
        self._hidden = tuple(zip(self.dense[:-1], self.activations, self.dropouts, strict=True))
        self._bind_flat()

    def _bind_flat(self) -> None:
        """Lay every parameter out in one flat buffer, weights first, then biases.

        ``parameters`` lists the per-layer views (for names, state and tests); ``flat`` is
        the whole buffer, which the optimizer updates with a handful of whole-array
        operations instead of a few per layer, and ``weight_group`` the weights part, which
        the penalty reads.
        """
        n_weights = sum(layer.W.size for layer in self.dense)
        n_total = n_weights + sum(layer.b.size for layer in self.dense)
        values = np.empty(n_total, dtype=self.dtype)
        grads = np.zeros(n_total, dtype=self.dtype)
        w_offset, b_offset = 0, n_weights
        for layer in self.dense:
            w_end, b_end = w_offset + layer.W.size, b_offset + layer.b.size
            layer.bind(
                values[w_offset:w_end].reshape(layer.W.shape),
                values[b_offset:b_end],
                grads[w_offset:w_end].reshape(layer.W.shape),
                grads[b_offset:b_end],
            )
            w_offset, b_offset = w_end, b_end
        self.parameters: list[Parameter] = []
        for i, layer in enumerate(self.dense):
            self.parameters.append(Parameter(f"W{i}", layer.W, layer.dW, is_weight=True))
            self.parameters.append(Parameter(f"b{i}", layer.b, layer.db, is_weight=False))
        self.weight_group = Parameter(
            "weights", values[:n_weights], grads[:n_weights], is_weight=True
        )
        # Everything in one array for the optimizer; decay reaches the weights part only.
        self.flat = Parameter("all", values, grads, is_weight=False, decayed=slice(0, n_weights))

    @property
    def weights(self) -> list[np.ndarray]:
        """The weight matrices, the only arrays a penalty or weight decay touches."""
        return [layer.W for layer in self.dense]

    def forward(
        self, X: np.ndarray, *, training: bool = False, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Network output ``(n, k)``. Dropout is active only when ``training`` is True, and only
        then is ``rng`` used; evaluation draws no random numbers."""
        A = X
        for layer, activation, dropout in self._hidden:
            A = activation.forward(layer.forward(A), inplace=True)
            if dropout.rate:
                A = dropout.forward(A, training=training, rng=rng)
        return self.dense[-1].forward(A)

    def backward(self, grad_out: np.ndarray) -> None:
        """Fill every parameter's gradient from ``grad_out = dL/d(output)``, last layer first."""
        grad = self.dense[-1].backward(grad_out)
        for layer, activation, dropout in reversed(self._hidden):
            if dropout.rate:
                grad = dropout.backward(grad)
            grad = layer.backward(activation.backward(grad))

    def predict_output(self, X: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
        """Evaluation-mode output for any number of rows, in chunks to bound memory; leaves
        nothing of ``X`` cached in the layers."""
        X = np.asarray(X, dtype=self.dtype)
        chunks = [
            self.forward(X[i : i + batch_size], training=False)
            for i in range(0, max(len(X), 1), batch_size)
        ]
        self.clear_cache()
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def clear_cache(self) -> None:
        """Forget what the last forward pass cached (inputs, masks), e.g. after training."""
        for layer in (*self.dense, *self.activations, *self.dropouts):
            layer.clear()

    def get_state(self) -> list[np.ndarray]:
        """Copies of every parameter, in ``parameters`` order."""
        return [p.value.copy() for p in self.parameters]

    def set_state(self, state: Sequence[np.ndarray]) -> None:
        """Overwrite every parameter in place (optimizer buffers keep pointing at them)."""
        if len(state) != len(self.parameters):
            raise ValueError(f"state must hold {len(self.parameters)} arrays; got {len(state)}")
        for p, value in zip(self.parameters, state, strict=True):
            if p.value.shape != np.shape(value):
                raise ValueError(
                    f"parameter {p.name} must have shape {p.value.shape}; got {np.shape(value)}"
                )
            p.value[...] = value

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters by name (``W0``, ``b0``, ...), e.g. for ``numpy.savez``."""
        return {p.name: p.value.copy() for p in self.parameters}
