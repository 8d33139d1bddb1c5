"""Statistics of the re-evaluation: t-intervals, paired tests, effect size, Holm correction.

The paired t-test is the primary test: it compares two kinds on the per-seed differences
``d_i = x_i - y_i`` and assumes those differences are roughly normal (with a handful of
seeds this cannot be checked, which the report says). The exact Wilcoxon signed-rank test
is reported alongside; it drops the normality assumption but, with ``n`` non-zero
differences, can never give a two-sided p-value below ``2 / 2**n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

# Accuracies are ratios of counts: differences that agree to 12 decimals are ties, not the
# rounding noise of subtracting two floats (29/30 - 28/30 != 28/30 - 27/30 in float64).
TIE_DECIMALS = 12


@dataclass(frozen=True)
class Interval:
    """Mean, standard deviation (ddof=1) and two-sided t-interval of a sample.

    ``sd``, ``low`` and ``high`` are NaN when fewer than two values are finite.
    """

    n: int
    mean: float
    sd: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedTest:
    """Comparison of ``x`` with ``y`` paired by position; every difference is ``x - y``.

    Attributes:
        n: Number of pairs.
        mean_diff: Mean of the differences.
        sd_diff: Their standard deviation (ddof=1).
        low: Lower end of the t-interval of the mean difference.
        high: Upper end of that interval.
        t: Paired t statistic ``mean_diff / (sd_diff / sqrt(n))``.
        df: Degrees of freedom, ``n - 1``.
        p_t: Two-sided p-value of the paired t-test; NaN when every difference is equal
            to zero (nothing to test), 0 when they are equal and non-zero.
        d_z: Cohen's d_z, ``mean_diff / sd_diff``.
        w: Wilcoxon statistic, the smaller of the positive and negative rank sums.
        p_w: Exact two-sided p-value of the Wilcoxon signed-rank test.
        p_w_min: The smallest p-value that test could give with these pairs.
    """

    n: int
    mean_diff: float
    sd_diff: float
    low: float
    high: float
    t: float
    df: int
    p_t: float
    d_z: float
    w: float
    p_w: float
    p_w_min: float


def t_interval(values: np.ndarray | list[float], confidence: float) -> Interval:
    """Mean and the t-interval ``mean ± t_{(1+c)/2, n-1} * sd / sqrt(n)`` of the finite values.

    Args:
        values: Sample, shape ``(n,)``; non-finite entries are ignored.
        confidence: Coverage of the interval, in (0, 1).
    """
    sample = np.asarray(values, dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    n = int(sample.size)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(sample.mean())
    if n < 2:
        return Interval(n, mean, math.nan, math.nan, math.nan)
    sd = float(sample.std(ddof=1))
    half = float(scipy_stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half)


def paired_test(
    x: np.ndarray | list[float], y: np.ndarray | list[float], confidence: float
) -> PairedTest:
    """Paired t-test, t-interval of the mean difference, d_z and exact Wilcoxon of ``x - y``.

    Args:
        x: Scores of one kind, shape ``(n,)``, one per seed.
        y: Scores of the reference kind on the same seeds, shape ``(n,)``.
        confidence: Coverage of the interval of the mean difference.
    """
    diffs = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    if diffs.ndim != 1 or not np.all(np.isfinite(diffs)):
        raise ValueError(f"x and y must be finite 1-D samples of equal length; got {diffs!r}")
    interval = t_interval(diffs, confidence)
    n, mean, sd = interval.n, interval.mean, interval.sd
    t, p_t, d_z = math.nan, math.nan, math.nan
    if n >= 2 and sd > 0:
        t = mean / (sd / math.sqrt(n))
        p_t = float(2.0 * scipy_stats.t.sf(abs(t), n - 1))
        d_z = mean / sd
    elif n >= 2 and mean != 0:
        # Every seed moved by the same non-zero amount: the t statistic is unbounded.
        t, p_t, d_z = math.copysign(math.inf, mean), 0.0, math.copysign(math.inf, mean)
    w, p_w, p_w_min = wilcoxon_signed_rank(diffs)
    return PairedTest(
        n=n,
        mean_diff=mean,
        sd_diff=sd,
        low=interval.low,
        high=interval.high,
        t=t,
        df=n - 1,
        p_t=p_t,
        d_z=d_z,
        w=w,
        p_w=p_w,
        p_w_min=p_w_min,
    )


def wilcoxon_signed_rank(diffs: np.ndarray | list[float]) -> tuple[float, float, float]:
    """Exact two-sided Wilcoxon signed-rank test of paired differences.

    Zero differences are dropped (Wilcoxon's convention); tied magnitudes get average
    ranks, and the null distribution is that of the observed ranks under every one of the
    ``2**n`` sign assignments, counted by dynamic programming over doubled ranks (so it is
    exact with ties too). ``p = min(1, 2 * min(P(W+ <= w+), P(W+ >= w+)))``.

    Args:
        diffs: Paired differences, shape ``(n,)``.

    Returns:
        ``(statistic, p_value, smallest attainable p_value)``; the statistic is the smaller
        rank sum. All three are NaN when every difference is zero.
    """
    values = np.round(np.asarray(diffs, dtype=np.float64), TIE_DECIMALS)
    values = values[values != 0]
    n = int(values.size)
    if n == 0:
        return math.nan, math.nan, math.nan
    ranks = scipy_stats.rankdata(np.abs(values))  # average ranks: integers or halves
    doubled = np.rint(2 * ranks).astype(np.int64)
    total = int(doubled.sum())
    counts = np.zeros(total + 1, dtype=np.float64)
    counts[0] = 1.0
    for rank in doubled:
        counts[rank:] = counts[rank:] + counts[: total + 1 - rank]
    probabilities = counts / counts.sum()
    observed = int(doubled[values > 0].sum())
    lower = float(probabilities[: observed + 1].sum())
    upper = float(probabilities[observed:].sum())
    p_value = min(1.0, 2.0 * min(lower, upper))
    statistic = min(observed, total - observed) / 2.0
    # The most extreme outcome (all signs alike) has probability 2 / 2**n under H0.
    smallest = min(1.0, 2.0 * float(probabilities[0]))
    return float(statistic), p_value, smallest


def holm(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values; NaN entries stay NaN and do not count.

    With ``m`` p-values sorted ascending, ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) p(j))``
    (1-based); rejecting where ``p_adj < alpha`` controls the family-wise error at alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = valid.size
    if m == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (m - position) * p[index]))
        adjusted[index] = running
    return adjusted
