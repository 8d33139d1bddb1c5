"""Caveats the data shows: each is one sentence a reader should weigh before the verdict."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from core.data import Splits, class_balance
from core.study.spec import Spec

from .compare import BASELINE, SCORE
from .metrics import imbalance_caveat
from .reevaluate import Configuration, Reevaluation

MIN_COMPLETE_TRIALS = 3


def collect_caveats(
    spec: Spec,
    trials: pd.DataFrame,
    splits: Splits,
    *,
    configurations: dict[str, Configuration],
    reevaluation: Reevaluation | None,
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    searched_kinds: Iterable[str],
    majority_accuracy: float | None,
    study_names: Iterable[str],
) -> list[str]:
    """Every caveat that applies, most important first."""
    notes: list[str] = []
    notes += _still_running(spec, trials, study_names)
    notes += _failed_and_pruned(trials)
    notes += _thin_kinds(trials, configurations, searched_kinds)
    if BASELINE not in configurations:
        notes.append(
            "No completed trial of the unregularized baseline (none): kinds are compared "
            "with the best kind only, so nothing here says whether regularizing helps."
        )
    notes += _baseline_not_plain(spec, configurations)
    notes += _seed_caveats(spec, reevaluation, comparisons)
    if splits.task == "classification":
        imbalance = imbalance_caveat(spec.study.metric, class_balance(splits.y_train))
        if imbalance:
            notes.append(imbalance)
        n_test = len(splits.y_test)
        notes.append(
            f"The test split has {n_test} rows, so one row changes test accuracy by "
            f"{1 / n_test:.4f}; differences smaller than that are ties in disguise."
        )
        notes += _unbounded_intervals(summary)
        if majority_accuracy is not None and not summary.empty:
            weak = summary[summary[f"{SCORE}.mean"] <= majority_accuracy]["kind"].tolist()
            if weak:
                notes.append(
                    f"{', '.join(weak)}: mean test accuracy no better than always predicting "
                    f"the majority class ({majority_accuracy:.4f})."
                )
    return notes


def _still_running(spec: Spec, trials: pd.DataFrame, study_names: Iterable[str]) -> list[str]:
    notes = []
    for study in study_names:
        group = trials[trials["trial.study"] == study]
        running = int(group["trial.state"].isin(("RUNNING", "WAITING")).sum())
        finished = int(group["trial.state"].isin(("COMPLETE", "PRUNED")).sum())
        if running or finished < spec.study.n_trials:
            notes.append(
                f"Study {study} is not finished: {finished} of {spec.study.n_trials} trials "
                f"finished, {running} still marked running (a live worker, or one that died "
                "before its heartbeat expired). The numbers may change when it completes."
            )
    return notes


def _failed_and_pruned(trials: pd.DataFrame) -> list[str]:
    notes = []
    failed = int((trials["trial.state"] == "FAIL").sum())
    if failed:
        notes.append(
            f"{failed} trial(s) failed (diverged, interrupted or lost with their worker); they "
            "are counted under Failures and none of their partial metrics is used."
        )
    pruned = int((trials["trial.state"] == "PRUNED").sum())
    if pruned:
        notes.append(
            f"{pruned} trial(s) were pruned: they count toward the budget but are never "
            "chosen as best, and their partial metrics are not used as results."
        )
    return notes


def _thin_kinds(
    trials: pd.DataFrame, configurations: dict[str, Configuration], searched: Iterable[str]
) -> list[str]:
    notes = []
    complete = trials[trials["trial.state"] == "COMPLETE"]["trial.kind"].value_counts()
    missing = [kind for kind in searched if kind not in configurations]
    if missing:
        notes.append(
            f"No completed trial for {', '.join(missing)}: searched but not re-evaluated or "
            "compared."
        )
    thin = [
        f"{kind} ({int(complete.get(kind, 0))})"
        for kind in configurations
        if complete.get(kind, 0) < MIN_COMPLETE_TRIALS
    ]
    if thin:
        notes.append(
            f"Too few completed trials to judge (fewer than {MIN_COMPLETE_TRIALS}): "
            f"{', '.join(thin)}. Their best configuration is a weak estimate of what the kind "
            "can do."
        )
    return notes


def _baseline_not_plain(spec: Spec, configurations: dict[str, Configuration]) -> list[str]:
    baseline = configurations.get(BASELINE)
    if baseline is None or spec.study.mode != "joint":
        return []
    params = baseline.params
    extras = []
    if params.dropout_rate:
        extras.append(f"dropout (rate {params.dropout_rate:.3g})")
    if params.patience is not None:
        extras.append(f"early stopping (patience {params.patience})")
    if params.augmentation != "none":
        extras.append(f"augmentation ({params.augmentation})")
    if not extras:
        return []
    return [
        "In joint mode 'none' means no weight penalty only: its best configuration also uses "
        f"{' and '.join(extras)}, searched alongside every kind. A per_kind study compares "
        "against a plain network."
    ]


def _seed_caveats(
    spec: Spec, reevaluation: Reevaluation | None, comparisons: pd.DataFrame
) -> list[str]:
    if reevaluation is None:
        return []
    notes = []
    k = len(reevaluation.seeds)
    alpha = 1.0 - spec.report.confidence
    if k < 2:
        notes.append(
            f"With K = {k} seed there is no standard deviation, interval or test; raise "
            "[report] seeds."
        )
    if k != spec.report.seeds:
        notes.append(f"Re-evaluated on K = {k} seeds instead of the spec's {spec.report.seeds}.")
    if reevaluation.failed:
        notes.append(
            f"Re-evaluation diverged for {', '.join(reevaluation.failed)}; those seeds are "
            "missing from the comparisons that involve them."
        )
    if not comparisons.empty:
        # Two-sided exact signed-rank test: with n non-zero differences, p >= 2 / 2**n.
        floor = 2.0 / 2.0**k
        if floor >= alpha:
            notes.append(
                f"With K = {k} seeds the exact Wilcoxon signed-rank test cannot give p below "
                f"{floor:.3g} (fewer non-zero differences, after ties, raise that floor), so "
                f"it can never reach significance at alpha = {alpha:.2g}; it is shown for "
                "reference and the paired t-test decides."
            )
        notes.append(
            "Confidence intervals of differences are unadjusted; significance is judged on "
            "Holm-adjusted p-values, so an interval may exclude 0 for a difference that is "
            "not significant after the correction."
        )
        notes.append(
            "The paired t-test assumes the per-seed differences of the test score are roughly "
            f"normal; with K = {k} seeds this cannot be checked."
        )
    return notes


def _unbounded_intervals(summary: pd.DataFrame) -> list[str]:
    """Accuracy-like scores live in [0, 1]; a t-interval reaching past that shows the normal
    approximation is strained by too few seeds or too much spread."""
    if summary.empty:
        return []
    keys = [SCORE, "test_balanced_accuracy", "test_macro_f1"]
    outside = sorted(
        {
            str(row["kind"])
            for _, row in summary.iterrows()
            for key in keys
            if f"{key}.ci_low" in row
            and (row[f"{key}.ci_low"] < 0.0 or row[f"{key}.ci_high"] > 1.0)
        }
    )
    if not outside:
        return []
    return [
        f"Some t-intervals reach beyond [0, 1] ({', '.join(outside)}): they are shown "
        "unclipped, and mean that the seeds spread too widely for a normal approximation "
        "with this many seeds; more seeds would narrow them."
    ]
