"""The report's content in reading order: which tables, which figures, which words."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.study.spec import Spec

from . import plots
from .compare import SCORE, score_label
from .render import FigureRef, Section, Table, display, number

GAP_LABELS = {"gap_test": "gap train-test", "gap_val_test": "gap val-test"}
EXTRA_LABELS = {"test_balanced_accuracy": "balanced accuracy", "test_macro_f1": "macro-F1"}


@dataclass
class ReportData:
    """Everything the report shows, computed; rendering only formats it."""

    spec: Spec
    task: str
    verdict: str
    caveats: list[str]
    summary: pd.DataFrame
    states: pd.DataFrame
    failures: pd.DataFrame
    kinds: pd.DataFrame
    trials: pd.DataFrame
    seeds: pd.DataFrame
    reevaluation: pd.DataFrame
    comparisons: pd.DataFrame
    baselines: pd.DataFrame
    importances: pd.DataFrame
    best_kind: str | None

    @property
    def confidence(self) -> float:
        return self.spec.report.confidence


def _mean_sd(row: pd.Series, key: str) -> str:
    return f"{number(row.get(f'{key}.mean'))} ± {number(row.get(f'{key}.sd'))}"


def _ci(row: pd.Series, key: str) -> str:
    return f"[{number(row.get(f'{key}.ci_low'))}, {number(row.get(f'{key}.ci_high'))}]"


def _interval_display(data: ReportData, keys: list[tuple[str, str]]) -> pd.DataFrame:
    level = f"{data.confidence:.0%} CI"
    rows = []
    for _, row in data.reevaluation.iterrows():
        shown = {"kind": row["kind"], "seeds": number(row["n_seeds"])}
        for key, label in keys:
            if f"{key}.mean" in row:
                shown[f"{label} (mean ± sd)"] = _mean_sd(row, key)
                shown[f"{label} {level}"] = _ci(row, key)
        rows.append(shown)
    return pd.DataFrame(rows, dtype=object)


def beyond_accuracy(data: ReportData) -> pd.DataFrame:
    """Classification: accuracy, balanced accuracy and macro-F1 per kind (means and
    intervals over the seeds), then the majority-class predictor."""
    rows = []
    for _, row in data.reevaluation.iterrows():
        entry = {"predictor": row["kind"], "n_seeds": row["n_seeds"]}
        for key in (SCORE, *EXTRA_LABELS):
            for stat in ("mean", "sd", "ci_low", "ci_high"):
                entry[f"{key}.{stat}"] = row.get(f"{key}.{stat}")
        entry["run_ids"] = row.get("run_ids")
        rows.append(entry)
    for _, row in data.baselines.iterrows():
        rows.append(
            {
                "predictor": row["predictor"],
                "n_seeds": 0,
                f"{SCORE}.mean": row["accuracy"],
                "test_balanced_accuracy.mean": row["balanced_accuracy"],
                "test_macro_f1.mean": row["macro_f1"],
            }
        )
    return pd.DataFrame(rows)


def _holm_scope(n: int) -> str:
    if n <= 1:
        return "With a single comparison, Holm's correction leaves its p-value unchanged."
    return f"Holm's correction covers all {n} comparisons of the table at once."


def tables_of(data: ReportData) -> list[Table]:
    """Every table, raw for the CSV files and formatted for the pages."""
    label = score_label(data.task)
    comparisons = data.comparisons.drop(columns="verdict")
    tables = [
        Table("summary", "Study and data", data.summary, display(data.summary)),
        Table("trial_states", "Trials per state", data.states, display(data.states)),
        Table("failures", "Failed trials by reason", data.failures, display(data.failures)),
        Table(
            "kinds",
            "Search results per kind",
            data.kinds,
            display(data.kinds),
            "best_epoch is 0-based (the epoch whose weights were kept); epochs_to_best counts "
            "the epochs trained to reach it. Only completed trials qualify as best.",
        ),
        Table(
            "reevaluation_summary",
            f"Re-evaluation: {label} and generalization gaps per kind",
            data.reevaluation,
            _interval_display(data, [(SCORE, label), *GAP_LABELS.items()]),
            "Run ids of every seed are in the per-seed table below and in the CSV.",
        ),
        Table(
            "reevaluation_runs",
            "Re-evaluation runs (one per kind and seed)",
            data.seeds,
            display(data.seeds.drop(columns=["config_hash", "source_run_id"], errors="ignore")),
            "The configuration hash and the source trial's run id of each row are in the CSV.",
        ),
        Table(
            "comparisons",
            f"Paired comparisons of {label}",
            data.comparisons,
            display(comparisons),
            "Difference = kind - reference, paired by seed. significant: Holm-adjusted paired "
            f"t-test p below alpha = {1 - data.confidence:.2g}.",
        ),
    ]
    if data.task == "classification":
        frame = beyond_accuracy(data)
        shown = _interval_display(data, [(SCORE, "accuracy"), *EXTRA_LABELS.items()])
        base = display(data.baselines).rename(
            columns={
                "predictor": "kind",
                "accuracy": "accuracy (mean ± sd)",
                "balanced_accuracy": "balanced accuracy (mean ± sd)",
                "macro_f1": "macro-F1 (mean ± sd)",
            }
        )
        tables.append(
            Table(
                "metrics_beyond_accuracy",
                "Metrics beyond accuracy, and the majority-class predictor",
                frame,
                pd.concat([shown, base], ignore_index=True).fillna("").astype(object),
                "Balanced accuracy is the mean recall over classes; macro-F1 the mean F1 over "
                "classes. The majority-class predictor is one fixed rule, so it has no spread.",
            )
        )
    else:
        tables.append(
            Table("baselines", "Trivial predictor", data.baselines, display(data.baselines))
        )
    tables += [
        Table("trials", "Finished trials (each once)", data.trials, display(data.trials)),
        Table(
            "importance",
            "Hyperparameter importance (fANOVA)",
            data.importances,
            display(data.importances),
        ),
    ]
    return tables


def figures_of(
    data: ReportData, trials: pd.DataFrame, histories: pd.DataFrame, out: Path
) -> list[FigureRef]:
    """Draw every figure into ``out`` as PNG."""
    metric = data.spec.study.metric
    maximize = data.spec.study.optuna_direction == "maximize"
    label = score_label(data.task)
    best = data.kinds.reindex(columns=["kind", "run_id", "best_trial", "best_epoch"]).dropna(
        subset=["run_id"]
    )
    reference = None
    if not data.baselines.empty:
        row = data.baselines.iloc[0]
        value = row["accuracy"] if data.task == "classification" else row["r2"]
        reference = (str(row["predictor"]), float(value))
    drawn = [
        (
            "learning_curves",
            "Learning curves",
            plots.learning_curves(histories, best),
            "Dashed: training loss, solid: validation loss, both in evaluation mode (no dropout, "
            "no augmentation, no penalty). Dotted: the epoch whose weights were kept.",
        ),
        (
            "test_score",
            f"{label[0].upper()}{label[1:]} per kind",
            plots.test_score_by_kind(
                data.seeds,
                data.reevaluation,
                task=data.task,
                confidence=data.confidence,
                reference=reference,
            ),
            f"Bars: {data.confidence:.0%} t-interval of the mean over the re-evaluation seeds; "
            "dots: single seeds. Dashed line (or a note, when far below): the trivial predictor.",
        ),
        (
            "gap_vs_strength",
            "Generalization gap against strength",
            plots.gap_vs_strength(trials, task=data.task),
            "Train minus test score of every completed trial against how strongly it "
            "regularized. Above 0: the network fits training data better than test data.",
        ),
        (
            "optimization_history",
            "Optimization history",
            plots.optimization_history(trials, metric=metric, maximize=maximize),
            "Each completed trial's validation objective; lines: best so far per study.",
        ),
        (
            "importance",
            "Hyperparameter importance",
            plots.importance_chart(data.importances),
            "Share of the objective's variance explained by each parameter (fANOVA).",
        ),
    ]
    pair = plots.l2_vs_weight_decay(trials, data.seeds, metric=metric, task=data.task)
    stale = out / "l2_vs_weight_decay.png"
    if pair is not None:
        drawn.append(
            (
                "l2_vs_weight_decay",
                "L2 against decoupled weight decay",
                pair,
                "Under plain SGD, weight decay of strength d equals an L2 penalty of strength d; "
                "under Adam they differ, because Adam rescales the penalty's gradient.",
            )
        )
    elif stale.exists():
        stale.unlink()
    return [
        FigureRef(name, title, plots.save(figure, out / f"{name}.png"), caption)
        for name, title, figure, caption in drawn
    ]


def sections_of(data: ReportData, tables: list[Table], figures: list[FigureRef]) -> list[Section]:
    """The report's sections in reading order."""
    by_name = {table.name: table for table in tables}
    label = score_label(data.task)
    k = int(data.reevaluation["n_seeds"].max()) if not data.reevaluation.empty else 0
    alpha = 1 - data.confidence
    verdict = Section(
        "Verdict",
        paragraphs=[
            data.verdict,
            "How this was decided: the search picked the best configuration of each kind on "
            f"the validation split. Each was then trained again on {k} fresh seeds (the same "
            f"seeds for every kind) and scored on the test split, which neither the search "
            "nor the choice of the best kind looked at. A difference counts only when a "
            "paired t-test over the seeds, Holm-corrected for the number of comparisons, "
            f"gives p < {alpha:.2g}.",
        ],
        css_class="verdict",
    )
    caveats = Section("Caveats", bullets=data.caveats or ["None found in the data."])
    failures = by_name["failures"]
    if failures.frame.empty:
        by_name["trial_states"].note = "No trial failed."
    summary = Section(
        "Study summary",
        tables=[by_name["summary"], by_name["trial_states"]]
        + ([failures] if not failures.frame.empty else []),
    )
    kinds = Section("Search results per kind", tables=[by_name["kinds"]])
    method = (
        f"Primary test: paired t-test on the per-seed differences of {label}; it assumes "
        "the differences are roughly normally distributed. Effect size: Cohen's d_z = mean "
        "difference / standard deviation of the differences. Shown alongside: the exact "
        "Wilcoxon signed-rank test, which drops the normality assumption but with n non-zero "
        f"differences cannot give p below 2 / 2^n. {_holm_scope(len(data.comparisons))} "
        "Each kind is compared with the unregularized baseline (none) and with the best "
        "kind on validation" + (f" ({data.best_kind})." if data.best_kind else ".")
    )
    reevaluation = Section(
        "Re-evaluation on fresh seeds",
        paragraphs=[
            "Seeds come from the study seed through a stream no trial uses. Intervals are "
            f"t-intervals at {data.confidence:.0%}: mean ± t(n-1) · sd / sqrt(n). gap "
            "train-test = train score minus test score of the kept weights; gap val-test = "
            "best validation score minus test score."
        ],
        tables=[by_name["reevaluation_summary"], by_name["reevaluation_runs"]],
    )
    comparisons = Section(
        "Comparisons",
        paragraphs=[method],
        bullets=list(data.comparisons["verdict"]) if not data.comparisons.empty else [],
        tables=[by_name["comparisons"]],
    )
    beyond = by_name.get("metrics_beyond_accuracy") or by_name.get("baselines")
    extra = Section(
        "Metrics beyond accuracy" if data.task == "classification" else "Trivial predictor",
        tables=[beyond],
    )
    pictures = Section("Figures", figures=figures, tables=[by_name["importance"]])
    provenance = Section(
        "Provenance",
        paragraphs=[
            "Every number comes from MLflow runs of the experiment named after the study: "
            "trial runs (tags.role = 'trial') and re-evaluation runs (tags.reevaluation = "
            "'true', with tags kind, seed and config_hash). The run id of each is in the "
            "tables and the CSV files; filter on those tags in the MLflow UI to see them.",
        ],
        tables=[by_name["trials"]],
    )
    return [
        verdict,
        caveats,
        summary,
        kinds,
        reevaluation,
        comparisons,
        extra,
        pictures,
        provenance,
    ]
