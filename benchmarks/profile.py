"""Per-phase time of the trainer's batch step, for section 3's explanation of its efficiency.

The loop below is ``core.nn.trainer._run_epoch`` taken apart with a clock between phases
(gather the batch; forward; loss and its gradient; backward; Adam), built from the same
public pieces, plus the evaluation pass the trainer runs after each epoch. ``perf_counter``
costs well under a microsecond, so the phases are not distorted the way a profiler that
hooks every call would distort them.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.measure import Samples, thread_limit
from benchmarks.workloads import Workload
from core.nn import MLP, SoftmaxCrossEntropy, make_optimizer
from core.nn.trainer import EpochEvaluator

PHASES = ("gather", "forward", "loss", "backward", "update")


def profile_step(workload: Workload, *, epochs: int, threads: int = 1) -> dict[str, Samples]:
    """Microseconds per batch of each phase (and milliseconds per epoch of evaluation),
    one sample per epoch after one warm-up epoch."""
    model = MLP(
        workload.X_train.shape[1],
        workload.hidden,
        workload.n_classes,
        init="glorot",
        seed=0,
    )
    optimizer = make_optimizer("adam", learning_rate=workload.learning_rate)
    loss = SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    X, y = workload.X_train, workload.y_train
    n, size = len(X), workload.batch_size
    n_batches = len(workload.batch_sizes())
    figures = {phase: Samples() for phase in (*PHASES, "evaluation")}
    buffer = np.empty((min(size, n), X.shape[1]), dtype=X.dtype)
    evaluate = EpochEvaluator(
        "cross_entropy", X, y, workload.X_test, workload.y_test, with_train=True
    )
    with thread_limit(threads):
        for epoch in range(epochs + 1):
            seconds = dict.fromkeys(PHASES, 0.0)
            order = rng.permutation(n)
            y_shuffled = y[order]
            for start in range(0, n, size):
                t0 = time.perf_counter()
                rows = order[start : start + size]
                X_batch = np.take(X, rows, axis=0, out=buffer[: len(rows)], mode="clip")
                y_batch = y_shuffled[start : start + size]
                t1 = time.perf_counter()
                output = model.forward(X_batch, training=True, rng=rng)
                t2 = time.perf_counter()
                loss.forward(output, y_batch)
                grad = loss.backward()
                t3 = time.perf_counter()
                model.backward(grad)
                t4 = time.perf_counter()
                optimizer.step([model.flat])
                t5 = time.perf_counter()
                marks = (t0, t1, t2, t3, t4, t5)
                for phase, begin, end in zip(PHASES, marks[:-1], marks[1:], strict=True):
                    seconds[phase] += end - begin
            started = time.perf_counter()
            evaluate(model)  # the trainer's pass: both splits in one forward
            evaluation = time.perf_counter() - started
            if epoch == 0:
                continue  # warm-up
            for phase in PHASES:
                figures[phase].add(seconds[phase] / n_batches * 1e6)
            figures["evaluation"].add(evaluation * 1e3)
    return figures
