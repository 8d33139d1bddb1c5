"""The benchmark's bare NumPy reference loop trains for real: it is only a fair yardstick
if it learns what the trainer and scikit-learn learn on the same data."""

from __future__ import annotations

from benchmarks import workloads
from benchmarks.peers import run_minimal, run_sklearn


def test_the_bare_loop_learns_digits_like_scikit_learn():
    workload = workloads.digits(8)
    bare = run_minimal(workload, seed=0)
    peer = run_sklearn(workload, dtype=float, seed=0)
    assert bare["seconds_per_epoch"] > 0
    assert bare["test_accuracy"] > 0.9
    assert abs(bare["test_accuracy"] - peer["test_accuracy"]) < 0.03
