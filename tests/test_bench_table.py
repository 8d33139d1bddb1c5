"""The benchmark table's verdicts: pass and miss against the target, the margin of a miss,
the range over repeats, and no verdict at all in a smoke run."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.measure import Samples
from benchmarks.report import Row, format_table
from benchmarks.side_by_side import _efficiency, _paired_ratio, _paired_ratios


def samples(*values: float) -> Samples:
    out = Samples()
    for value in values:
        out.add(value)
    return out


@pytest.mark.parametrize(
    ("measured", "at_most", "status", "margin"),
    [
        (0.30, True, "pass", ""),
        (0.42, True, "miss", "by 0.070x (20% over)"),
        (1.9, False, "pass", ""),
        (1.62, False, "miss", "by 0.18x (10% under)"),
    ],
)
def test_a_row_is_judged_against_its_target(measured, at_most, status, margin):
    target = 0.35 if at_most else 1.8
    row = Row("1 x", "m", "eval", measured, "x", target, at_most=at_most)
    assert row.status == status
    assert row.margin == margin


def test_a_smoke_run_shows_the_target_but_no_verdict():
    row = replace(Row("1 x", "m", "eval", 0.9, "x", 0.35), judged=False)
    assert row.status == "not judged"
    assert row.margin == ""
    assert "<= 0.35x" in format_table([row])


def test_percentage_gaps_are_points_and_the_range_is_printed():
    row = Row("4 s", "share", "eval", 28.1, "%", 5.0, spread=(27.5, 31.25))
    assert row.margin == "by 23.1 pts (462% over)"
    assert row.spread_text == "27.5..31.2%"
    line = format_table([row]).splitlines()[3]
    assert "27.5..31.2%" in line and "miss by 23.1 pts" in line


def test_ratios_are_paired_within_each_repeat_not_medians_divided():
    # Repeat 2 ran on a slow spell: both sides slow. Median / median would be 2/2.5 = 0.8.
    results = {
        "ours": {"seconds_per_epoch": samples(1.0, 4.0, 2.0)},
        "peer": {"seconds_per_epoch": samples(2.0, 8.0, 2.5)},
    }
    assert _paired_ratios(results, "ours", "peer") == [0.5, 0.5, 0.8]
    assert _paired_ratio(results, "ours", "peer") == 0.5
    assert _paired_ratio(results, "ours", "missing") != _paired_ratio(results, "ours", "missing")


def test_efficiency_is_the_inverse_ratio_with_its_range_inverted():
    results = {
        "trainer": {"seconds_per_epoch": samples(2.0, 3.0, 4.0)},
        "matmuls/1t": {"seconds_per_epoch": samples(1.0, 1.0, 1.0)},
    }
    value, spread = _efficiency(results, "trainer")
    assert value == pytest.approx(100 / 3)
    assert spread == pytest.approx((25.0, 50.0))
