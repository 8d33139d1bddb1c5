"""Side-by-side benchmarks of the trainer and the study system: ``python -m benchmarks``.

Five sections, each printed as rows of one table of ratios (target, measured, pass or miss)
and written as JSON under ``benchmarks/results/``:

1. The trainer against scikit-learn's ``MLPClassifier`` (float64 and float32 input).
2. The trainer against PyTorch on the CPU, when PyTorch is importable (skipped otherwise).
3. Hardware efficiency: the training step's GFLOP/s against its matrix products alone.
4. Study overhead: a fixed slice of ``studies/digits.toml`` with Optuna and MLflow in
   SQLite, with Optuna in SQLite only, and with Optuna in memory.
5. Workers: trials per minute of a small study with one and two worker processes.

Every comparison runs in one process, on the same data, architecture, optimizer, batch size
and epochs; the configurations are interleaved (their order rotates every repeat) after a
warm-up, and each figure is the median of the repeats. PyTorch is an optional extra: the
package imports it only inside ``benchmarks.torch_peer``.
"""
