"""One timed training run per library: the trainer, scikit-learn, and the bare matrix products.

Each run returns ``{"seconds_per_epoch": ..., "test_accuracy": ...}``; the caller sets the
thread limit. PyTorch lives in ``benchmarks.torch_peer``, so this module never imports it.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from benchmarks.workloads import Workload
from core.nn import MLP, TrainConfig, train


def run_trainer(workload: Workload, *, evaluate: bool, seed: int) -> dict[str, float]:
    """``core.nn.train`` with Adam for ``workload.epochs`` epochs.

    With ``evaluate`` the trainer runs its per-epoch evaluation pass as a study does (train
    metrics in evaluation mode plus the test rows as validation split). Without it,
    ``evaluate_train`` is off and the validation split is a single test row: the trainer
    always records a validation loss, and one row makes that pass negligible.

    Weights start from Glorot's uniform initialization, as ``MLPClassifier``'s do, so test
    accuracies compare training rather than initializations (the trainer's ReLU default,
    He's normal initialization, trails after a couple of epochs on the 100k workload).
    """
    model = MLP(
        workload.X_train.shape[1],
        workload.hidden,
        workload.n_classes,
        init="glorot",
        seed=seed,
    )
    config = TrainConfig(
        max_epochs=workload.epochs,
        batch_size=workload.batch_size,
        optimizer="adam",
        learning_rate=workload.learning_rate,
        evaluate_train=evaluate,
        seed=seed,
    )
    rows = slice(None) if evaluate else slice(0, 1)
    started = time.perf_counter()
    train(
        model,
        workload.X_train,
        workload.y_train,
        workload.X_test[rows],
        workload.y_test[rows],
        config,
    )
    seconds = time.perf_counter() - started
    predicted = np.argmax(model.predict_output(workload.X_test), axis=1)
    return {
        "seconds_per_epoch": seconds / workload.epochs,
        "test_accuracy": float(np.mean(predicted == workload.y_test)),
    }


def run_sklearn(workload: Workload, *, dtype: type, seed: int) -> dict[str, float]:
    """scikit-learn's ``MLPClassifier`` with the same architecture, Adam settings, batch size
    and epochs, no L2 penalty (``alpha=0``, like the trainer's default) and no early
    stopping; ``dtype`` is the input dtype (float64 is its default, float32 is kept)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    classifier = MLPClassifier(
        hidden_layer_sizes=workload.hidden,
        activation="relu",
        solver="adam",
        alpha=0.0,
        batch_size=workload.batch_size,
        learning_rate_init=workload.learning_rate,
        max_iter=workload.epochs,
        shuffle=True,
        random_state=seed,
        tol=0.0,
        n_iter_no_change=workload.epochs + 1,  # never stops before max_iter
    )
    X_train = workload.X_train.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        started = time.perf_counter()
        classifier.fit(X_train, workload.y_train)
        seconds = time.perf_counter() - started
    accuracy = classifier.score(workload.X_test.astype(dtype), workload.y_test)
    return {"seconds_per_epoch": seconds / workload.epochs, "test_accuracy": float(accuracy)}


def run_matmuls(workload: Workload, *, seed: int) -> dict[str, float]:
    """Only the matrix products of the trainer's epochs, with its shapes and layouts.

    Per batch: ``A @ W`` for every layer (a fresh output, as in ``Dense.forward``), then
    ``A^T G`` into the weight-gradient buffer for every layer and ``G W^T`` for every layer
    but the first, as in ``Dense.backward``. Inputs are random and reused, so no time
    goes to data movement outside the products.
    """
    rng = np.random.default_rng(seed)
    widths, rows = workload.widths, workload.batch_size
    inputs = [rng.standard_normal((rows, width), dtype=np.float32) for width in widths]
    weights = [
        (rng.standard_normal((a, b), dtype=np.float32) / np.float32(np.sqrt(a)))
        for a, b in zip(widths[:-1], widths[1:], strict=True)
    ]
    weight_grads = [np.empty_like(W) for W in weights]
    started = time.perf_counter()
    for _ in range(workload.epochs):
        for m in workload.batch_sizes():
            A = inputs[0][:m]
            for W in weights:
                A = A @ W  # (m, b)
            G = inputs[-1][:m]  # (m, k)
            for i in range(len(weights) - 1, -1, -1):
                np.matmul(inputs[i][:m].T, G, out=weight_grads[i])
                if i:
                    G = G @ weights[i].T  # (m, a)
    seconds = time.perf_counter() - started
    return {"seconds_per_epoch": seconds / workload.epochs}


def run_minimal(workload: Workload, *, seed: int) -> dict[str, float]:
    """A bare NumPy loop of the kind the issue's probe was: float32, Glorot weights, ReLU,
    softmax cross-entropy, Adam, mini-batches in a fresh shuffled order each epoch; no
    penalties, dropout, augmentation, divergence checks, evaluation or history. It tells
    what the trainer's generality costs per epoch, on the same machine in the same run."""
    rng = np.random.default_rng(seed)
    X, y = workload.X_train, workload.y_train
    n = len(X)
    widths = workload.widths
    params: list[np.ndarray] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        limit = np.sqrt(6.0 / (a + b))
        params += [rng.uniform(-limit, limit, (a, b)).astype(np.float32), np.zeros(b, np.float32)]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    lr, beta1, beta2, eps = workload.learning_rate, 0.9, 0.999, 1e-8
    step = 0
    started = time.perf_counter()
    for _ in range(workload.epochs):
        order = rng.permutation(n)
        for start in range(0, n, workload.batch_size):
            rows = order[start : start + workload.batch_size]
            activations = [X[rows]]
            for i in range(0, len(params), 2):
                z = activations[-1] @ params[i] + params[i + 1]
                activations.append(np.maximum(z, 0) if i + 2 < len(params) else z)
            logits = activations.pop()
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(rows)), y[rows]] -= 1
            grad = p / np.float32(len(rows))
            grads: list[np.ndarray] = []
            for i in range(len(params) - 2, -1, -2):
                inputs = activations.pop()
                grads[:0] = [inputs.T @ grad, grad.sum(axis=0)]
                if i:
                    grad = (grad @ params[i].T) * (inputs > 0)
            step += 1
            scale = lr * np.sqrt(1 - beta2**step) / (1 - beta1**step)
            for p_, g, m, v in zip(params, grads, first, second, strict=True):
                m *= beta1
                m += (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * g * g
                p_ -= np.float32(scale) * m / (np.sqrt(v) + np.float32(eps))
    seconds = time.perf_counter() - started
    hidden = workload.X_test
    for i in range(0, len(params), 2):
        hidden = hidden @ params[i] + params[i + 1]
        if i + 2 < len(params):
            hidden = np.maximum(hidden, 0)
    return {
        "seconds_per_epoch": seconds / workload.epochs,
        "test_accuracy": float(np.mean(np.argmax(hidden, axis=1) == workload.y_test)),
    }
