"""The benchmark table's verdicts: pass and miss against the target, the margin of a miss,
the range over repeats, and no verdict at all in a smoke run."""

from __future__ import annotations

import math
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


def _overhead_result(walls: dict[str, list[float]], rests: dict[str, list[float]]) -> dict:
    from benchmarks.study import CONFIGS

    names = ("wall", "loop", "trainer", "rest", "loop_rest", "callback_per_epoch")
    figures = {config: {name: samples(0.0, 0.0, 0.0) for name in names} for config in CONFIGS}
    for config in CONFIGS:
        figures[config]["wall"] = samples(*walls.get(config, [1.0, 1.0, 1.0]))
        figures[config]["rest"] = samples(*rests.get(config, [0.1, 0.1, 0.1]))
    return {"n_trials": 20, "spec_trials": 150, "same_trials": True, "figures": figures}


def test_the_overhead_share_is_the_median_of_each_repeats_share_and_lies_in_its_range():
    from benchmarks.study import overhead_rows

    # Per repeat: (rest with both stores - rest in memory) / wall with both stores.
    result = _overhead_result(
        walls={"sqlite+mlflow": [4.0, 5.0, 10.0]},
        rests={"sqlite+mlflow": [2.0, 3.0, 3.0], "memory": [1.0, 1.0, 2.0]},
    )
    row = overhead_rows(result)[0]
    assert row.spread == pytest.approx((10.0, 40.0))  # shares 25%, 40%, 10%
    assert row.measured == pytest.approx(25.0)
    assert row.status == "miss"


def test_a_workers_repeat_without_a_rate_is_left_out_not_a_nan_median():
    from benchmarks.study import WORKERS_HIDDEN, workers_rows

    keys = [
        f"{workers}/hidden {width}, {tracked}"
        for width, tracked in ((WORKERS_HIDDEN, "mlflow"), (WORKERS_HIDDEN, "untracked"),
                               (1024, "mlflow"))
        for workers in (1, 2)
    ]  # fmt: skip
    figures = {
        key: {"steady": samples(100, 100, 100), "wall": samples(50, 50, 50)} for key in keys
    }
    figures[f"2/hidden {WORKERS_HIDDEN}, mlflow"]["steady"] = samples(200, float("nan"), 170)
    row = workers_rows(figures, 40)[0]
    assert row.measured == pytest.approx(1.85)
    assert row.spread == pytest.approx((1.7, 2.0))
    assert row.status == "pass"
    assert row.detail == "185 vs 100 trials/min"  # the NaN repeat left out of both medians

    nowhere = float("nan")
    figures[f"2/hidden {WORKERS_HIDDEN}, mlflow"]["steady"] = samples(nowhere, nowhere, nowhere)
    row = workers_rows(figures, 40)[0]
    assert math.isnan(row.measured)
    assert "nan" not in row.detail and "too few trials" in row.detail


def test_results_are_strict_json_with_null_for_nan(tmp_path, monkeypatch):
    import json

    import numpy as np

    from benchmarks import report

    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path)
    payload = {"a": float("nan"), "b": [np.float32(1.5), float("inf")], "c": np.arange(2)}
    first = report.write_json(payload, quick=True)
    second = report.write_json(payload, quick=True)  # the same second: a second file
    assert first != second and first.exists() and second.exists()

    def refuse(constant):
        raise ValueError(constant)

    assert json.loads(first.read_text(), parse_constant=refuse) == {
        "a": None, "b": [1.5, None], "c": [0, 1]
    }  # fmt: skip


def test_a_ratio_row_shows_the_range_of_its_paired_ratios():
    from benchmarks import workloads
    from benchmarks.side_by_side import _ratio_row

    results = {
        "trainer/1t/no-eval": {"seconds_per_epoch": samples(1.0, 3.0, 2.0)},
        "peer": {"seconds_per_epoch": samples(4.0, 4.0, 4.0)},
    }
    workload = workloads.digits(1)
    row = _ratio_row("1 x", workload, results, "trainer/1t/no-eval", "peer", "t / p", 0.35)
    assert row.measured == 0.5
    assert row.spread == (0.25, 0.75)
    assert row.spread_text == "0.25..0.75x"


def test_a_quick_run_prints_its_targets_without_verdicts(monkeypatch, tmp_path, capsys):
    from benchmarks import cli, report

    def fake_run(settings, sections):
        assert settings.quick
        return [Row("1 x", "m", "eval", 0.9, "x", 0.35)], {"notes": []}

    monkeypatch.setattr(cli, "run", fake_run)
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path)
    assert cli.main(["--quick", "--sections", "1"]) == 0
    out = capsys.readouterr().out
    assert "not judged" in out and "miss" not in out
