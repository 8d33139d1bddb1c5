"""Command line of ``python -m benchmarks``: run the sections, print the table, write JSON."""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from core.cli.args import Parser

SECTIONS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Settings:
    """Sizes of every section; ``quick`` is a smoke run whose figures are not for targets."""

    quick: bool
    digits_epochs: int
    digits_repeats: int
    large_samples: int
    large_epochs: int
    large_repeats: int
    study_trials: int
    study_repeats: int
    worker_trials: int
    worker_repeats: int


FULL = Settings(
    quick=False,
    digits_epochs=40,
    digits_repeats=5,
    large_samples=100_000,
    large_epochs=2,
    large_repeats=3,
    study_trials=20,
    study_repeats=3,
    worker_trials=40,
    worker_repeats=3,
)
QUICK = Settings(
    quick=True,
    digits_epochs=5,
    digits_repeats=2,
    large_samples=5_000,
    large_epochs=1,
    large_repeats=1,
    study_trials=3,
    study_repeats=1,
    worker_trials=8,
    worker_repeats=1,
)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m benchmarks",
        description="Side-by-side benchmarks of the trainer and the study system.",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (a minute or two)")
    parser.add_argument(
        "--sections",
        default=",".join(str(s) for s in SECTIONS),
        help="comma-separated section numbers to run (default: all)",
    )
    args = parser.parse_args(argv)
    try:
        sections = sorted({int(part) for part in args.sections.split(",") if part.strip()})
    except ValueError:
        parser.error(f"--sections must be numbers from 1 to 5; got {args.sections!r}")
    if not sections or not set(sections) <= set(SECTIONS):
        parser.error(f"--sections must be numbers from 1 to 5; got {args.sections!r}")

    _quiet_libraries()
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()
    rows, payload = run(settings, sections)
    if settings.quick:  # a smoke run's figures show the targets but give no verdict
        rows = [replace(row, judged=False) for row in rows]
    payload["seconds"] = time.perf_counter() - started

    from benchmarks.report import format_table, rows_as_json, write_json

    payload["rows"] = rows_as_json(rows)
    print()
    if rows:
        print(format_table(rows))
    for note in payload["notes"]:
        print(f"note: {note}")
    if rows:  # nothing measured (section 2 alone, without PyTorch): no file
        print(f"wrote {write_json(payload, quick=settings.quick)}")
    print(f"total {payload['seconds']:.0f} s")
    return 0


def _quiet_libraries() -> None:
    """No network from MLflow's usage telemetry, and no INFO chatter from the libraries."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("mlflow", "alembic", "optuna", "core"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run(settings: Settings, sections: list[int]) -> tuple[list, dict[str, Any]]:
    """Run the chosen sections; a section that fails becomes a note, not a crash."""
    from benchmarks.measure import default_blas_threads, environment
    from benchmarks.torch_peer import torch_version

    notes: list[str] = []
    _span.clear()
    if settings.quick:
        notes.append("quick run: smoke test only, the figures are not for the targets")
    notes.append(
        "every figure is the median of interleaved repeats after a warm-up; 'no-eval' is "
        "the trainer without its per-epoch evaluation pass, 'eval' with it"
    )
    torch = torch_version() if 2 in sections else None
    if 2 in sections and torch is None:
        notes.append(
            "section 2 skipped: PyTorch is not importable here (install the 'bench' extra, "
            "torch==2.13.0, in a separate environment: see benchmarks/README.md)"
        )
    raw: dict[str, Any] = {}
    rows: list = []
    # Section 2 alone, without PyTorch, has nothing to time.
    if {1, 3} & set(sections) or (2 in sections and torch is not None):
        rows += _side_by_side(settings, sections, torch is not None, raw, notes)
    if 4 in sections:
        rows += _study_overhead(settings, raw, notes)
    if 5 in sections:
        rows += _workers(settings, raw, notes)
    _close_span(notes)
    payload = {
        "settings": asdict(settings),
        "sections": sections,
        "environment": environment(),
        "torch": torch,
        "sklearn_default_threads": default_blas_threads(),
        "notes": notes,
        "raw": raw,
    }
    return rows, payload


def _side_by_side(
    settings: Settings, sections: list[int], with_torch: bool, raw: dict, notes: list[str]
) -> list:
    """Sections 1 to 3 on both workloads; their figures go into ``raw``."""
    from benchmarks import profile, side_by_side, workloads
    from benchmarks.measure import default_blas_threads

    sklearn_threads = default_blas_threads()
    plan = (
        (
            workloads.digits(settings.digits_epochs),
            side_by_side.DIGITS_TARGETS,
            settings.digits_repeats,
            settings.digits_epochs,
        ),
        (
            workloads.classification(settings.large_samples, settings.large_epochs),
            side_by_side.LARGE_TARGETS,
            settings.large_repeats,
            2,
        ),
    )
    rows: list = []
    for workload, targets, repeats, profile_epochs in plan:
        what = f"sections 1-3 on {workload.name}"
        _progress(f"{what} ({workload.architecture})", notes)
        results = _guarded(
            notes,
            what,
            lambda w=workload, r=repeats: side_by_side.measure(
                w, repeats=r, with_torch=with_torch, sklearn_threads=sklearn_threads
            ),
        )
        if results is None:
            continue
        raw[workload.name] = {
            "architecture": workload.architecture,
            "epochs": workload.epochs,
            "batch_size": workload.batch_size,
            "train_rows": len(workload.X_train),
            "repeats": repeats,
            "matmul_flops_per_epoch": workload.matmul_flops_per_epoch(),
            "runs": _summaries(results),
        }
        if 1 in sections:
            rows += side_by_side.sklearn_rows(workload, results, targets, sklearn_threads)
        if 2 in sections and with_torch:
            rows += side_by_side.torch_rows(workload, results, targets)
        if 3 in sections:
            rows += side_by_side.efficiency_rows(workload, results, targets)
            phases = profile.profile_step(workload, epochs=profile_epochs)
            raw[workload.name]["profile"] = {k: v.summary() for k, v in phases.items()}
            rows.append(side_by_side.profile_row(workload, phases))
    return rows


def _summaries(figures: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{configuration: {figure: Samples}}`` as JSON: median, spread and every value."""
    return {
        key: {name: samples.summary() for name, samples in values.items()}
        for key, values in figures.items()
    }


def _study_overhead(settings: Settings, raw: dict, notes: list[str]) -> list:
    """Section 4; its figures go into ``raw``."""
    from benchmarks import study

    trials = settings.study_trials
    _progress(f"section 4: studies/digits.toml x{trials}, four ways", notes)
    result = _guarded(
        notes, "section 4", lambda: study.measure_overhead(trials, settings.study_repeats)
    )
    if result is None:
        return []
    raw["study_overhead"] = {
        "n_trials": result["n_trials"],
        "same_trials": result["same_trials"],
        "figures": _summaries(result["figures"]),
    }
    return study.overhead_rows(result)


def _workers(settings: Settings, raw: dict, notes: list[str]) -> list:
    """Section 5; its figures go into ``raw``."""
    from benchmarks import study

    trials = settings.worker_trials
    _progress(f"section 5: {trials} trials with 1 and 2 workers", notes)
    figures = _guarded(
        notes, "section 5", lambda: study.measure_workers(trials, settings.worker_repeats)
    )
    if figures is None:
        return []
    raw["workers"] = _summaries(figures)
    return study.workers_rows(figures, trials)


def _guarded(notes: list[str], what: str, run: Callable[[], Any]) -> Any:
    """``run()``, or None with a note when it raises (the other sections still run)."""
    try:
        return run()
    except Exception as error:
        traceback.print_exc()
        notes.append(f"{what} failed: {type(error).__name__}: {error}")
        return None


def _progress(message: str, notes: list[str] | None = None) -> None:
    """Print a timestamped line; with ``notes``, it also starts a section's span, and the
    span before it gets a note if other processes were busy (see ``_close_span``)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
    if notes is not None:
        _close_span(notes)
        from benchmarks.measure import OtherLoad

        _span.update(label=message.split(" (")[0].split(":")[0], load=OtherLoad())


_span: dict[str, Any] = {}  # the section being timed: its label and its OtherLoad


def _close_span(notes: list[str], threshold: float = 0.25) -> None:
    """Note the span that is ending if other processes kept a quarter core or more busy."""
    if not _span:
        return
    others = _span["load"].cores()
    if others is not None and others >= threshold:
        notes.append(
            f"other processes kept {others:.2f} of {os.cpu_count()} cores busy during "
            f"{_span['label']}: its figures, the two-thread ones first (scikit-learn at its "
            "default included), are the least reliable"
        )
    _span.clear()
