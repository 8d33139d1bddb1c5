"""``regstudy report SPEC``: the command-line entry of the report.

Kept in a module of its own so the report can grow without touching the rest; the command
line registers it with :func:`add_report_command`. Like the rest of the command line, and
unlike the library modules, this handler prints.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.cli.args import positive_int

REPORTS_DIR = Path("reports")


def add_report_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``report SPEC [--storage URL] [--tracking-uri URI] [--out DIR] [--seeds K]``.

    Args:
        subparsers: The ``add_subparsers()`` object of the ``regstudy`` parser.

    Returns:
        The new sub-parser.
    """
    from core.study.errors import DEFAULT_STORAGE, DEFAULT_TRACKING_URI

    report = subparsers.add_parser(
        "report",
        help="the generalization comparison report of a study (reports/NAME/)",
        description=(
            "Re-evaluate the best configuration of each regularizer kind on fresh seeds, "
            "compare the kinds with paired tests, and write report.html, report.md, CSV "
            "tables and PNG figures; the report is also logged to the study's MLflow run."
        ),
    )
    report.add_argument("spec", help="path to studies/NAME.toml")
    report.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL")
    report.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help="MLflow tracking URI")
    report.add_argument(
        "--out", default=None, help="output directory (default: reports/<study name>)"
    )
    report.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        help="re-evaluation seeds K (default: the spec's [report] seeds)",
    )
    report.set_defaults(func=cmd_report, quiet=False, verbose=False)
    return report


def cmd_report(args: argparse.Namespace) -> int:
    """Build the report; exit code 2 with one line on stderr when it cannot be built."""
    from core.report import ReportError, build_report
    from core.study.errors import StorageError
    from core.study.spec import load_spec
    from core.study.urls import check_storage_url, check_tracking_uri, probe_tracking_server

    spec = load_spec(args.spec)
    out_dir = Path(args.out) if args.out else REPORTS_DIR / spec.study.name
    try:
        check_storage_url(args.storage)
        check_tracking_uri(args.tracking_uri)
        probe_tracking_server(args.tracking_uri)
        _check_out_dir(out_dir, given=args.out is not None)
    except StorageError as error:
        print(f"regstudy: error: {error}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        result = build_report(
            spec,
            storage_url=args.storage,
            tracking_uri=args.tracking_uri,
            out_dir=out_dir,
            seeds=args.seeds,
        )
    except ReportError as error:
        print(f"regstudy: error: {error}", file=sys.stderr)
        return 2
    lines = [
        result.verdict,
        "",
        f"caveats: {len(result.caveats)} (see the report)",
        f"re-evaluation runs: {result.new_runs} trained, {result.reused_runs} reused",
        f"report: {result.html}",
        f"        {result.markdown}",
    ]
    if result.logged_run_id:
        lines.append(f"logged to MLflow run {result.logged_run_id} under report/")
    lines.append(f"built in {time.monotonic() - started:.0f} s")
    print("\n".join(lines))
    return 0


def _check_out_dir(out_dir: Path, *, given: bool) -> None:
    """The report directory exists or can be made, and its files can be written, before
    anything is re-trained."""
    import os

    from core.study.errors import StorageError

    flag = f"--out {str(out_dir)!r}" if given else f"report directory {str(out_dir)!r}"
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise StorageError(
                f"{flag}: {str(existing)!r} is a link to a missing place; name a directory"
            )
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == out_dir else f" ({str(existing)!r} is a file)"
        raise StorageError(f"{flag}: not a directory{where}; name a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(f"{flag}: {str(existing)!r} is not writable; name another directory")
    if existing == out_dir:
        # The report writes report.html, report.md, CSV tables and PNG figures here.
        for entry in out_dir.iterdir():
            if entry.suffix in (".html", ".md", ".csv", ".png") and entry.is_dir():
                raise StorageError(
                    f"{flag}: {str(entry)!r} is a directory where the report writes files; "
                    "remove it or name another directory"
                )
