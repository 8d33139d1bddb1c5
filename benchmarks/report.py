"""Rows of the result table: target, measured value, pass or miss; printing and JSON."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Row:
    """One line of the table.

    Args:
        section: Section number and name, e.g. ``"1 sklearn"``.
        measure: What was compared, e.g. ``"digits epoch time: trainer 1t / MLP f64 2t"``.
        figure: Which trainer figure the row uses: ``no-eval`` (training only), ``eval``
            (with the per-epoch evaluation pass), or ``-``.
        measured: The measured value in ``unit``.
        unit: ``x`` (a ratio), ``%``, ``pts`` (accuracy points), ``ms`` or ``us``.
        target: The bound to meet, or None for a row that only informs.
        at_most: True when ``measured`` must be at most ``target`` (else at least);
            ``absolute`` compares ``|measured|``.
        detail: The raw figures behind the value, in a few words.
        spread: The lowest and highest per-repeat value behind ``measured`` (a median),
            or None when the row has no per-repeat values.
        judged: False in a smoke run: the row shows its target but gives no verdict.
    """

    section: str
    measure: str
    figure: str
    measured: float
    unit: str
    target: float | None = None
    at_most: bool = True
    absolute: bool = False
    detail: str = ""
    spread: tuple[float, float] | None = None
    judged: bool = True

    @property
    def status(self) -> str:
        if self.target is None:
            return "info"
        if not self.judged:
            return "not judged"
        if not math.isfinite(self.measured):
            return "n/a"
        value = abs(self.measured) if self.absolute else self.measured
        ok = value <= self.target if self.at_most else value >= self.target
        return "pass" if ok else "miss"

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "-"
        bound = "|x| <=" if self.absolute else ("<=" if self.at_most else ">=")
        return f"{bound} {_number(self.target, self.unit)}"

    @property
    def spread_text(self) -> str:
        """``low..high`` over the repeats, e.g. ``0.31..0.36x``; ``-`` without repeats."""
        if self.spread is None:
            return "-"
        low, high = self.spread
        # The low end without its unit: "0.31..0.36x", "28.0..31.5%".
        bare = _number(low, self.unit).removesuffix(self.unit).strip()
        return f"{bare}..{_number(high, self.unit)}"

    @property
    def margin(self) -> str:
        """How far a missed row is from its target, e.g. ``+0.07x (20% over)``."""
        if self.status != "miss" or self.target is None:
            return ""
        value = abs(self.measured) if self.absolute else self.measured
        gap = value - self.target
        relative = abs(gap) / abs(self.target) * 100 if self.target else math.inf
        side = "over" if self.at_most else "under"
        # A gap between two percentages is in percentage points, not a percentage.
        gap_text = f"{abs(gap):.1f} pts" if self.unit == "%" else _number(abs(gap), self.unit)
        return f"by {gap_text} ({relative:.0f}% {side})"


def _number(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    if unit == "x":
        return f"{value:.3f}x" if abs(value) < 0.1 else f"{value:.2f}x"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "pts":
        return f"{value:+.1f} pts"
    if unit in ("ms", "us"):
        return f"{value:.1f} {unit}"
    return f"{value:.3g} {unit}"


def format_table(rows: list[Row]) -> str:
    """The table as fixed-width text, one line per row, grouped by section."""
    header = ("section", "measure", "figure", "target", "measured", "range", "result", "detail")
    rows = sorted(rows, key=lambda row: row.section)  # stable: workloads keep their order
    cells = [
        (
            row.section,
            row.measure,
            row.figure,
            row.target_text,
            _number(row.measured, row.unit),
            row.spread_text,
            " ".join(part for part in (row.status, row.margin) if part),
            row.detail,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header) - 1)]
    lines = []
    rule = "-" * (sum(widths) + 3 * len(widths) + len(header[-1]))
    previous = None
    for index, line in enumerate([header, *cells]):
        if index <= 1 or line[0] != previous:
            lines.append(rule)
        previous = line[0]
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        lines.append(" | ".join([*padded, line[-1]]).rstrip())
    lines.append(rule)
    return "\n".join(lines)


def write_json(payload: dict[str, Any], *, quick: bool) -> Path:
    """Write ``payload`` to ``benchmarks/results/bench[-quick]-YYYYmmdd-HHMMSS.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = f"bench{'-quick' if quick else ''}-{stamp}"
    path = RESULTS_DIR / f"{stem}.json"
    copy = 1
    while path.exists():  # two runs within one second
        copy += 1
        path = RESULTS_DIR / f"{stem}-{copy}.json"
    text = json.dumps(_finite(payload), indent=2, default=_jsonable, allow_nan=False)
    path.write_text(text + "\n")
    return path


def _finite(value: Any) -> Any:
    """NaN and infinities as null: strict JSON parsers reject Python's NaN literal."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # NumPy scalars and arrays
        return _finite(value.tolist())
    return value


def rows_as_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [{**asdict(row), "status": row.status, "margin": row.margin} for row in rows]


def _jsonable(value: Any) -> Any:
    """Fallback for what JSON has no type for (paths, say): its text."""
    return str(value)
