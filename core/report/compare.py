"""Tables of the re-evaluation: per-seed scores, per-kind intervals, paired comparisons.

Which kind is "best" is decided on validation (the mean re-evaluated validation metric
over the seeds), never on test: choosing on test and then testing on test would favour
whichever kind got lucky seeds. Comparisons are then made on the test score: each kind
against the unregularized baseline ``none`` and against the best kind, paired by seed,
with one Holm correction over the whole family of comparisons.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .reevaluate import Reevaluation, kind_order
from .stats import holm, paired_test, t_interval

SCORE = "test_accuracy"  # accuracy for classification, R2 for regression (objective names)
GAPS = ("gap_test", "gap_val_test")
CLASSIFICATION_EXTRA = ("test_balanced_accuracy", "test_macro_f1")
BASELINE = "none"
COMPARISON_COLUMNS = (
    "kind",
    "reference",
    "role",
    "n_pairs",
    "mean_diff",
    "sd_diff",
    "diff_ci_low",
    "diff_ci_high",
    "t",
    "df",
    "p_t",
    "p_holm",
    "cohen_dz",
    "wilcoxon_w",
    "p_wilcoxon",
    "p_wilcoxon_min",
    "significant",
    "verdict",
)


def score_label(task: str) -> str:
    """How the test score is called in the report."""
    return "test accuracy" if task == "classification" else "test R2"


def summary_keys(task: str) -> list[str]:
    """Metrics summarized per kind: the score, the two gaps, and for classification the
    class-balanced metrics."""
    keys = [SCORE, *GAPS]
    if task == "classification":
        keys += list(CLASSIFICATION_EXTRA)
    return keys


def seed_table(runs: pd.DataFrame, reevaluation: Reevaluation, val_key: str) -> pd.DataFrame:
    """One row per successful re-evaluation run: kind, seed, run id and its metrics.

    Args:
        runs: Every run of the experiment, read after the re-evaluation was logged.
        reevaluation: Which run holds each (kind, seed).
        val_key: The validation metric of the objective (``best_val_loss`` or
            ``best_val_accuracy``).
    """
    by_id = runs.set_index("run.id")
    keys = [SCORE, *GAPS, *CLASSIFICATION_EXTRA, val_key, "best_epoch", "epochs_run"]
    rows = []
    for (kind, seed), run_id in reevaluation.run_ids.items():
        run = by_id.loc[run_id]
        row = {
            "kind": kind,
            "seed_index": reevaluation.seeds.index(seed),
            "seed": seed,
            "run_id": run_id,
            "config_hash": run.get("tags.config_hash"),
            "source_run_id": run.get("tags.source_run_id"),
        }
        row.update({key: float(run.get(f"metrics.{key}", math.nan)) for key in keys})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["order"] = frame["kind"].map({k: i for i, k in enumerate(kind_order(frame["kind"]))})
    frame = frame.sort_values(["order", "seed_index"]).drop(columns="order")
    return frame.dropna(axis=1, how="all").reset_index(drop=True)


def summarize(seeds: pd.DataFrame, keys: list[str], confidence: float) -> pd.DataFrame:
    """Per kind: number of seeds, then mean, sd and t-interval of each metric in ``keys``
    (columns ``<key>.mean``, ``<key>.sd``, ``<key>.ci_low``, ``<key>.ci_high``), and the
    run ids the numbers come from."""
    rows = []
    for kind in kind_order(seeds["kind"]) if not seeds.empty else []:
        group = seeds[seeds["kind"] == kind]
        row: dict = {"kind": kind, "n_seeds": len(group)}
        for key in keys:
            if key not in group:
                continue
            interval = t_interval(group[key].to_numpy(), confidence)
            row.update(
                {
                    f"{key}.mean": interval.mean,
                    f"{key}.sd": interval.sd,
                    f"{key}.ci_low": interval.low,
                    f"{key}.ci_high": interval.high,
                }
            )
        row["run_ids"] = ";".join(group["run_id"])
        rows.append(row)
    return pd.DataFrame(rows)


def choose_best(seeds: pd.DataFrame, val_key: str, maximize: bool) -> str | None:
    """The kind with the best mean re-evaluated validation metric (ties: ARMS order)."""
    if seeds.empty or val_key not in seeds:
        return None
    means = seeds.groupby("kind")[val_key].mean().dropna()
    if means.empty:
        return None
    ordered = kind_order(means.index)
    values = means.reindex(ordered)
    position = int(np.argmax(values.to_numpy()) if maximize else np.argmin(values.to_numpy()))
    return ordered[position]


def comparison_pairs(kinds: list[str], best: str | None) -> list[tuple[str, str, str]]:
    """(kind, reference, role) for each kind against ``none`` and against the best kind.

    A pair is tested once: ``best - none`` belongs to the baseline comparisons, so
    ``none - best`` is not added again, and when ``none`` is itself the best kind the
    baseline comparisons are all there is.
    """
    pairs = []
    if BASELINE in kinds:
        pairs += [(kind, BASELINE, "vs baseline") for kind in kinds if kind != BASELINE]
    if best is not None and best != BASELINE:
        pairs += [(kind, best, "vs best") for kind in kinds if kind not in (best, BASELINE)]
    return pairs


def compare(
    seeds: pd.DataFrame, *, best: str | None, confidence: float, task: str
) -> pd.DataFrame:
    """Paired comparisons of the test score, Holm-corrected over the whole family.

    Each row pairs the seeds both kinds have; significance means a Holm-adjusted paired
    t-test p-value below ``alpha = 1 - confidence``.
    """
    columns = list(COMPARISON_COLUMNS)
    if seeds.empty:
        return pd.DataFrame(columns=columns)
    table = seeds.pivot(index="seed", columns="kind", values=SCORE)
    rows = []
    for kind, reference, role in comparison_pairs(kind_order(seeds["kind"]), best):
        paired = table[[kind, reference]].dropna()
        if len(paired) < 2:
            continue
        test = paired_test(paired[kind].to_numpy(), paired[reference].to_numpy(), confidence)
        rows.append(
            {
                "kind": kind,
                "reference": reference,
                "role": role,
                "n_pairs": test.n,
                "mean_diff": test.mean_diff,
                "sd_diff": test.sd_diff,
                "diff_ci_low": test.low,
                "diff_ci_high": test.high,
                "t": test.t,
                "df": test.df,
                "p_t": test.p_t,
                "cohen_dz": test.d_z,
                "wilcoxon_w": test.w,
                "p_wilcoxon": test.p_w,
                "p_wilcoxon_min": test.p_w_min,
            }
        )
    frame = pd.DataFrame(rows, columns=[c for c in columns if c not in ("p_holm",)])
    frame.insert(frame.columns.get_loc("cohen_dz"), "p_holm", holm(frame["p_t"].to_numpy()))
    alpha = 1.0 - confidence
    frame["significant"] = (frame["p_holm"] < alpha).astype(bool)
    frame["verdict"] = [sentence(row, confidence, task) for _, row in frame.iterrows()]
    return frame[columns]


def sentence(row: pd.Series, confidence: float, task: str) -> str:
    """One comparison in words: a difference only when it survived the Holm correction."""
    label = score_label(task)
    pair = f"{row['kind']} vs {row['reference']}"
    if not math.isfinite(row["p_t"]):
        return f"{pair}: no significant difference ({label} identical on every seed)."
    detail = (
        f"mean difference {row['mean_diff']:+.4f}, unadjusted {confidence:.0%} CI "
        f"[{row['diff_ci_low']:+.4f}, {row['diff_ci_high']:+.4f}], d_z = {row['cohen_dz']:.2f}, "
        f"Holm-adjusted p = {_p(row['p_holm'])}"
    )
    if not row["significant"]:
        return f"{pair}: no significant difference in {label} ({detail})."
    direction = "higher" if row["mean_diff"] > 0 else "lower"
    return f"{pair}: {row['kind']} has {direction} {label} ({detail})."


def headline(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    *,
    best: str | None,
    val_key: str,
    confidence: float,
    task: str,
) -> str:
    """The answer in a few sentences: which kind is best on validation, and whether any
    difference in the test score is significant."""
    if summary.empty:
        return "No kind has a re-evaluated configuration, so there is nothing to compare."
    kinds = list(summary["kind"])
    k = int(summary["n_seeds"].max())
    alpha = 1.0 - confidence
    if len(kinds) == 1:
        return f"Only {kinds[0]} has a completed configuration; there is nothing to compare."
    parts = []
    if best is not None:
        mean = seeds_mean(summary, best, SCORE)
        parts.append(
            f"Best kind on validation ({val_key}, mean over {k} seeds): {best}, with mean "
            f"{score_label(task)} {mean:.4f}."
        )
    significant = comparisons[comparisons["significant"]]
    if BASELINE not in kinds:
        parts.append(
            "No unregularized baseline (none) has a completed trial; kinds are compared with "
            "the best kind only."
        )
    baseline_rows = comparisons[comparisons["role"] == "vs baseline"]
    against = significant[significant["role"] == "vs baseline"]
    if BASELINE in kinds and against.empty and not baseline_rows.empty:
        parts.append(
            f"No kind differs significantly from the unregularized baseline in "
            f"{score_label(task)} (paired t-test, Holm-corrected, alpha = {alpha:.2g})."
        )
    for _, row in against.iterrows():
        parts.append(sentence(row, confidence, task))
    if best == BASELINE:
        parts.append("The unregularized baseline is itself the best kind on validation.")
    worse = significant[significant["role"] == "vs best"]
    if best is not None and not comparisons[comparisons["role"] == "vs best"].empty:
        if worse.empty:
            parts.append(f"No kind differs significantly from {best} either.")
        for _, row in worse.iterrows():
            parts.append(sentence(row, confidence, task))
    return " ".join(parts)


def seeds_mean(summary: pd.DataFrame, kind: str, key: str) -> float:
    """The mean of ``key`` over the seeds of ``kind`` (NaN when the kind is absent)."""
    row = summary[summary["kind"] == kind]
    return float(row[f"{key}.mean"].iloc[0]) if not row.empty else math.nan


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}" if value >= 1e-3 else f"{value:.1e}"
