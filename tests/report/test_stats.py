"""The report's statistics against scipy and against brute force."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from core.report.stats import holm, paired_test, t_interval, wilcoxon_signed_rank

from .helpers import holm_by_definition


def brute_force_wilcoxon(diffs: np.ndarray) -> tuple[float, float]:
    """Two-sided exact p by listing every sign assignment of the non-zero differences."""
    values = np.round(np.asarray(diffs, dtype=float), 12)
    values = values[values != 0]
    ranks = stats.rankdata(np.abs(values))
    observed = ranks[values > 0].sum()
    sums = np.array(
        [
            sum(r for r, s in zip(ranks, signs, strict=True) if s)
            for signs in itertools.product((0, 1), repeat=len(values))
        ]
    )
    lower = np.mean(sums <= observed + 1e-9)
    upper = np.mean(sums >= observed - 1e-9)
    return min(observed, ranks.sum() - observed), min(1.0, 2 * min(lower, upper))


@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_t_interval_matches_scipy(n, confidence):
    sample = np.random.default_rng(n).normal(0.8, 0.05, size=n)
    interval = t_interval(sample, confidence)
    low, high = stats.t.interval(confidence, n - 1, loc=sample.mean(), scale=stats.sem(sample))
    assert interval.n == n
    assert interval.mean == pytest.approx(sample.mean(), abs=1e-15)
    assert interval.sd == pytest.approx(np.std(sample, ddof=1), rel=1e-12)
    assert (interval.low, interval.high) == pytest.approx((low, high), rel=1e-12)


def test_t_interval_of_one_value_has_no_spread():
    interval = t_interval([0.9], 0.95)
    assert interval.mean == 0.9
    assert math.isnan(interval.sd) and math.isnan(interval.low) and math.isnan(interval.high)


@pytest.mark.parametrize("seed", range(6))
def test_paired_test_matches_scipy_ttest_rel_and_wilcoxon(seed):
    rng = np.random.default_rng(seed)
    n = 3 + seed
    y = rng.integers(20, 30, size=n) / 30  # accuracies on a 30-row test split: ties happen
    x = np.clip(y + rng.integers(-2, 3, size=n) / 30, 0, 1)
    if np.all(x == y):
        x[0] = min(1.0, x[0] + 1 / 30)
    result = paired_test(x, y, 0.95)
    reference = stats.ttest_rel(x, y)
    diffs = x - y
    assert result.t == pytest.approx(reference.statistic, rel=1e-10)
    assert result.p_t == pytest.approx(reference.pvalue, rel=1e-10)
    assert result.df == n - 1
    assert result.d_z == pytest.approx(diffs.mean() / diffs.std(ddof=1), rel=1e-12)
    low, high = stats.t.interval(0.95, n - 1, loc=diffs.mean(), scale=stats.sem(diffs))
    assert (result.low, result.high) == pytest.approx((low, high), rel=1e-10, abs=1e-15)
    rounded = np.round(diffs, 12)
    if np.any(rounded != 0):
        permutation = stats.wilcoxon(rounded, method=stats.PermutationMethod(n_resamples=10**6))
        assert result.w == pytest.approx(permutation.statistic)
        assert result.p_w == pytest.approx(permutation.pvalue, rel=1e-12)
        assert (result.w, result.p_w) == pytest.approx(brute_force_wilcoxon(diffs), rel=1e-12)


@pytest.mark.parametrize(
    "diffs",
    [[0.1, 0.2, 0.3], [1, 2, 3, 4, 5], [-1, 2, 3, 4, 5, 6], [0.1, 0.1, -0.1, 0.2, 0.0]],
)
def test_exact_wilcoxon_matches_brute_force_with_ties_and_zeros(diffs):
    statistic, p_value, smallest = wilcoxon_signed_rank(diffs)
    assert (statistic, p_value) == pytest.approx(brute_force_wilcoxon(np.array(diffs)))
    nonzero = sum(d != 0 for d in diffs)
    assert smallest == pytest.approx(2 / 2**nonzero)


def test_wilcoxon_cannot_reach_005_with_five_seeds():
    _, p_value, smallest = wilcoxon_signed_rank([0.01, 0.02, 0.03, 0.04, 0.05])
    assert p_value == smallest == pytest.approx(0.0625)


def test_float_noise_between_equal_accuracy_steps_is_a_tie():
    # 0.93 - 0.90 and 0.95 - 0.92 differ in float64; as accuracy steps they are equal.
    x, y = np.array([0.93, 0.95, 0.90]), np.array([0.90, 0.92, 0.93])
    assert len(set(np.abs(x - y))) > 1
    statistic, p_value, _ = wilcoxon_signed_rank(x - y)
    # Three tied magnitudes share rank 2: W- = 2, and W+ = 4 is as likely as W+ = 2.
    assert (statistic, p_value) == (2.0, 1.0)


def test_identical_scores_give_no_test_and_constant_shift_gives_p_zero():
    same = paired_test([0.9, 0.8, 0.7], [0.9, 0.8, 0.7], 0.95)
    assert math.isnan(same.p_t) and math.isnan(same.t) and math.isnan(same.p_w)
    shifted = paired_test([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], 0.95)
    assert shifted.p_t == 0.0 and shifted.t == math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy: "catastrophic cancellation"
        assert math.isnan(stats.ttest_rel([0.9, 0.8, 0.7], [0.9, 0.8, 0.7]).pvalue)
        assert stats.ttest_rel([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]).pvalue == 0.0


def test_paired_test_refuses_non_finite_scores():
    with pytest.raises(ValueError, match="finite 1-D samples"):
        paired_test([0.9, math.nan], [0.8, 0.7], 0.95)


@pytest.mark.parametrize(
    "p",
    [[0.01, 0.04, 0.03, 0.2], [0.5], [0.001, 0.001, 0.9], [0.04, 0.03, 0.02, 0.01, 0.5]],
)
def test_holm_matches_the_step_down_definition(p):
    assert holm(p) == pytest.approx(holm_by_definition(p), rel=1e-12)


def test_holm_ignores_missing_p_values():
    adjusted = holm([0.01, math.nan, 0.04])
    assert math.isnan(adjusted[1])
    assert adjusted[[0, 2]] == pytest.approx([0.02, 0.04])
