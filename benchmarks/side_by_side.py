"""Sections 1 to 3: the trainer, scikit-learn, PyTorch and the bare matrix products, timed
in one interleaved run per workload, and the rows of the table built from those runs."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.measure import Samples, interleave, thread_limit
from benchmarks.peers import run_matmuls, run_minimal, run_sklearn, run_trainer
from benchmarks.profile import PHASES
from benchmarks.report import Row
from benchmarks.workloads import Workload

ACCURACY_POINTS = 1.0  # |trainer - peer| test accuracy, in percentage points


@dataclass(frozen=True)
class Targets:
    """Epoch-time ratios (at most) and matrix-product share of the step (at least)."""

    sklearn: float
    torch: float
    efficiency: float


DIGITS_TARGETS = Targets(sklearn=0.35, torch=0.30, efficiency=0.30)
LARGE_TARGETS = Targets(sklearn=0.45, torch=0.80, efficiency=0.75)

Run = Callable[[int], dict[str, float]]


def configurations(
    workload: Workload, *, with_torch: bool, sklearn_threads: int
) -> list[tuple[str, Run]]:
    """Every timed configuration of one workload, keyed ``library/threads/variant``.

    The trainer and PyTorch run on one and two threads, with and without their per-epoch
    evaluation; scikit-learn runs at its default thread count (its own setting, which the
    targets use) and on one and two threads where those differ from the default; the bare
    matrix products run on one thread, for section 3, and so does a bare NumPy loop (the
    kind of probe the targets were set with), to show what the trainer's extras cost.
    """

    def limited(threads: int | None, run: Callable[..., dict[str, float]], **kwargs) -> Run:
        def timed(repeat: int) -> dict[str, float]:
            with thread_limit(threads):
                return run(workload, seed=repeat, **kwargs)

        return timed

    runs: list[tuple[str, Run]] = []
    for threads in (1, 2):
        for evaluate in (False, True):
            variant = "eval" if evaluate else "no-eval"
            runs.append(
                (f"trainer/{threads}t/{variant}", limited(threads, run_trainer, evaluate=evaluate))
            )
    for dtype in (np.float64, np.float32):
        runs.append((f"sklearn/default/{dtype.__name__}", limited(None, run_sklearn, dtype=dtype)))
        for threads in sorted({1, 2} - {sklearn_threads}):
            key = f"sklearn/{threads}t/{dtype.__name__}"
            runs.append((key, limited(threads, run_sklearn, dtype=dtype)))
    if with_torch:
        from benchmarks.torch_peer import run_torch

        for threads in (1, 2):
            for evaluate in (False, True):
                variant = "eval" if evaluate else "no-eval"
                runs.append(
                    (f"torch/{threads}t/{variant}", limited(threads, run_torch, evaluate=evaluate))
                )
    runs.append(("matmuls/1t", limited(1, run_matmuls)))
    runs.append(("minimal/1t", limited(1, run_minimal)))
    return runs


def measure(
    workload: Workload, *, repeats: int, with_torch: bool, sklearn_threads: int
) -> dict[str, dict[str, Samples]]:
    """One warm-up epoch of every configuration, then ``repeats`` interleaved rounds."""
    runs = configurations(workload, with_torch=with_torch, sklearn_threads=sklearn_threads)
    warm = configurations(
        workload.with_epochs(1), with_torch=with_torch, sklearn_threads=sklearn_threads
    )
    interleave(warm, repeats=1)
    return interleave(runs, repeats=repeats)


def _epoch(results: dict[str, dict[str, Samples]], key: str) -> float:
    return results[key]["seconds_per_epoch"].median if key in results else float("nan")


def _paired_ratios(results: dict[str, dict[str, Samples]], ours: str, peer: str) -> list[float]:
    """``ours / peer`` within each repeat. Both ran once per repeat, interleaved, so a slow
    spell of the machine lands on both sides of a ratio; a ratio of the two medians could
    pair figures from different repeats."""
    if ours not in results or peer not in results:
        return []
    mine = results[ours]["seconds_per_epoch"].values
    theirs = results[peer]["seconds_per_epoch"].values
    return [a / b for a, b in zip(mine, theirs, strict=True)]


def _paired_ratio(results: dict[str, dict[str, Samples]], ours: str, peer: str) -> float:
    """The median over repeats of the paired ratios."""
    ratios = _paired_ratios(results, ours, peer)
    return statistics.median(ratios) if ratios else float("nan")


def _spread(values: list[float]) -> tuple[float, float] | None:
    return (min(values), max(values)) if values else None


def _efficiency(results: dict[str, dict[str, Samples]], ours: str) -> tuple[float, tuple | None]:
    """Percent of the matrix products' own speed: median and spread over repeats."""
    ratios = _paired_ratios(results, ours, "matmuls/1t")
    if not ratios:
        return float("nan"), None
    return 100 / statistics.median(ratios), (100 / max(ratios), 100 / min(ratios))


def _accuracy(results: dict[str, dict[str, Samples]], key: str) -> float:
    return results[key]["test_accuracy"].median if key in results else float("nan")


def _ratio_row(
    section: str,
    workload: Workload,
    results: dict[str, dict[str, Samples]],
    ours: str,
    peer: str,
    label: str,
    target: float | None,
) -> Row:
    mine, theirs = _epoch(results, ours), _epoch(results, peer)
    figure = ours.rsplit("/", 1)[-1] if ours.startswith("trainer/") else "-"
    return Row(
        section,
        f"{workload.name} epoch: {label}",
        figure,
        _paired_ratio(results, ours, peer),
        "x",
        target,
        detail=f"{mine * 1e3:.3g} vs {theirs * 1e3:.3g} ms/epoch (medians)",
        spread=_spread(_paired_ratios(results, ours, peer)),
    )


def _accuracy_row(
    section: str, workload: Workload, results: dict[str, dict[str, Samples]], peer: str, name: str
) -> Row:
    mine, theirs = _accuracy(results, "trainer/1t/no-eval"), _accuracy(results, peer)
    return Row(
        section,
        f"{workload.name} test accuracy: trainer - {name}",
        "-",
        (mine - theirs) * 100,
        "pts",
        ACCURACY_POINTS,
        absolute=True,
        detail=f"{mine * 100:.1f}% vs {theirs * 100:.1f}% (median)",
    )


def sklearn_rows(
    workload: Workload,
    results: dict[str, dict[str, Samples]],
    targets: Targets,
    sklearn_threads: int,
) -> list[Row]:
    """Section 1: the trainer on one thread against ``MLPClassifier`` at its default."""
    section = "1 sklearn"
    default = f"{sklearn_threads}t default"
    rows = []
    for dtype in ("float64", "float32"):
        peer = f"sklearn/default/{dtype}"
        for variant in ("no-eval", "eval"):
            rows.append(
                _ratio_row(
                    section,
                    workload,
                    results,
                    f"trainer/1t/{variant}",
                    peer,
                    f"trainer 1t / MLPClassifier {dtype} {default}",
                    targets.sklearn,
                )
            )
    rows.append(_accuracy_row(section, workload, results, "sklearn/default/float64", "sklearn"))
    rows.append(
        _ratio_row(
            section,
            workload,
            results,
            "matmuls/1t",
            "sklearn/default/float32",
            f"floor: the step's matmuls alone 1t / MLPClassifier float32 {default}",
            None,
        )
    )
    rows.append(
        _ratio_row(
            section,
            workload,
            results,
            "minimal/1t",
            "sklearn/default/float32",
            f"reference: a bare NumPy loop 1t / MLPClassifier float32 {default}",
            None,
        )
    )
    for threads in (1, 2):
        peer_threads = "default" if threads == sklearn_threads else f"{threads}t"
        for dtype in ("float64", "float32"):
            rows.append(
                _ratio_row(
                    section,
                    workload,
                    results,
                    f"trainer/{threads}t/no-eval",
                    f"sklearn/{peer_threads}/{dtype}",
                    f"trainer {threads}t / MLPClassifier {dtype} {threads}t",
                    None,
                )
            )
    return rows


def torch_rows(
    workload: Workload, results: dict[str, dict[str, Samples]], targets: Targets
) -> list[Row]:
    """Section 2: the trainer against PyTorch, both on one thread (and both on two)."""
    section = "2 torch"
    rows = [
        _ratio_row(
            section,
            workload,
            results,
            f"trainer/1t/{variant}",
            f"torch/1t/{variant}",
            "trainer 1t / torch 1t",
            targets.torch,
        )
        for variant in ("no-eval", "eval")
    ]
    rows.append(_accuracy_row(section, workload, results, "torch/1t/no-eval", "torch"))
    rows.append(
        _ratio_row(
            section,
            workload,
            results,
            "minimal/1t",
            "torch/1t/no-eval",
            "reference: a bare NumPy loop 1t / torch 1t",
            None,
        )
    )
    rows.append(
        _ratio_row(
            section,
            workload,
            results,
            "trainer/2t/no-eval",
            "torch/2t/no-eval",
            "trainer 2t / torch 2t",
            None,
        )
    )
    return rows


def efficiency_rows(
    workload: Workload, results: dict[str, dict[str, Samples]], targets: Targets
) -> list[Row]:
    """Section 3: GFLOP/s of the training step against its matrix products alone."""
    flops = workload.matmul_flops_per_epoch()
    step, products = _epoch(results, "trainer/1t/no-eval"), _epoch(results, "matmuls/1t")
    achieved, peak = flops / step / 1e9, flops / products / 1e9
    efficiency, spread = _efficiency(results, "trainer/1t/no-eval")
    rows = [
        Row(
            "3 efficiency",
            f"{workload.name} step GFLOP/s / its matmuls' GFLOP/s (1t)",
            "no-eval",
            efficiency,
            "%",
            targets.efficiency * 100,
            at_most=False,
            detail=f"{achieved:.1f} vs {peak:.1f} GFLOP/s (medians)",
            spread=spread,
        )
    ]
    for key, name in (("torch/1t/no-eval", "torch step"), ("minimal/1t", "bare NumPy loop")):
        if key not in results:
            continue
        theirs = flops / _epoch(results, key) / 1e9
        efficiency, spread = _efficiency(results, key)
        rows.append(
            Row(
                "3 efficiency",
                f"{workload.name} {name} GFLOP/s / the same matmuls' (1t)",
                "-",
                efficiency,
                "%",
                detail=f"{theirs:.1f} vs {peak:.1f} GFLOP/s (medians)",
                spread=spread,
            )
        )
    return rows


def profile_row(workload: Workload, figures: dict[str, Samples]) -> Row:
    """Section 3's explanation: where a training step's time goes, phase by phase."""
    phases = {phase: figures[phase].median for phase in PHASES}
    detail = ", ".join(f"{phase} {value:.0f}" for phase, value in phases.items())
    evaluation = figures["evaluation"].median
    return Row(
        "3 efficiency",
        f"{workload.name} profile: time per batch by phase (1t)",
        "no-eval",
        sum(phases.values()),
        "us",
        detail=f"{detail} us; evaluation pass {evaluation:.1f} ms/epoch",
    )
