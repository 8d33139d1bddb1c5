"""The same training loop in PyTorch on the CPU: float32, Adam, cross-entropy, shuffled batches.

PyTorch is optional: ``torch_version`` says whether it is importable, and nothing else in
the package imports it.
"""

from __future__ import annotations

import time

from benchmarks.workloads import Workload

EVAL_CHUNK_ROWS = 4096  # rows per forward pass in evaluation, as the trainer's predict_output


def torch_version() -> str | None:
    """PyTorch's version, or None when it cannot be imported."""
    try:
        import torch
    except ImportError:
        return None
    return str(torch.__version__)


def run_torch(workload: Workload, *, evaluate: bool, seed: int) -> dict[str, float]:
    """Train ``Linear -> ReLU -> ... -> Linear`` for ``workload.epochs`` epochs.

    The loop matches the trainer's: a fresh permutation each epoch, contiguous batches of the
    shuffled rows, forward, mean cross-entropy from logits, backward, one Adam step, and the
    running training loss read back every batch (the trainer checks it for divergence).
    Adam is PyTorch's fused CPU implementation, its fastest; weights start from Glorot's
    uniform initialization like the trainer's here. With ``evaluate`` every epoch
    ends with an inference-mode pass over the training and test rows (loss and accuracy),
    like the trainer's evaluation pass.
    """
    import torch
    from torch.nn import functional

    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for n_in, n_out in zip(workload.widths[:-1], workload.widths[1:], strict=True):
        linear = torch.nn.Linear(n_in, n_out)
        torch.nn.init.xavier_uniform_(linear.weight)  # Glorot, as the other two libraries
        torch.nn.init.zeros_(linear.bias)
        layers += [linear, torch.nn.ReLU()]
    network = torch.nn.Sequential(*layers[:-1])  # the output layer is linear
    optimizer = torch.optim.Adam(network.parameters(), lr=workload.learning_rate, fused=True)
    X_train, y_train = torch.from_numpy(workload.X_train), torch.from_numpy(workload.y_train)
    X_test, y_test = torch.from_numpy(workload.X_test), torch.from_numpy(workload.y_test)
    generator = torch.Generator().manual_seed(seed)
    n, size = len(X_train), workload.batch_size

    started = time.perf_counter()
    for _ in range(workload.epochs):
        order = torch.randperm(n, generator=generator)
        X_shuffled, y_shuffled = X_train[order], y_train[order]
        total = 0.0
        for start in range(0, n, size):
            optimizer.zero_grad(set_to_none=True)
            loss = functional.cross_entropy(
                network(X_shuffled[start : start + size]), y_shuffled[start : start + size]
            )
            loss.backward()
            optimizer.step()
            total += loss.item() * min(size, n - start)
        if evaluate:
            _evaluate(network, X_train, y_train)
            _evaluate(network, X_test, y_test)
    seconds = time.perf_counter() - started
    return {
        "seconds_per_epoch": seconds / workload.epochs,
        "test_accuracy": _evaluate(network, X_test, y_test)[1],
    }


def _evaluate(network, X, y) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in inference mode, in chunks of rows."""
    import torch
    from torch.nn import functional

    loss_sum, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(X), EVAL_CHUNK_ROWS):
            logits = network(X[start : start + EVAL_CHUNK_ROWS])
            labels = y[start : start + EVAL_CHUNK_ROWS]
            loss_sum += functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == labels).sum())
    return loss_sum / len(X), correct / len(X)
