"""Tables of the search itself: study summary, trials per state, failures, kinds, trials.

Only COMPLETE trials count as results. Pruned trials are finished (they used their budget)
but never best; failed, killed and running trials are listed and counted, and none of
their partial metrics reaches a result table.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from core.data import Splits, class_balance
from core.study.space import TrialParams
from core.study.spec import Spec
from core.study.urls import mask_url

from .collect import LoadedStudy
from .reevaluate import Configuration, Reevaluation, kind_order

# Optuna trial states and how the report names them.
STATES = {
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}
FINISHED = ("COMPLETE", "PRUNED")


def study_summary(
    spec: Spec,
    studies: list[LoadedStudy],
    trials: pd.DataFrame,
    splits: Splits,
    *,
    storage_url: str,
    tracking_uri: str,
    experiment_id: str,
    reevaluation: Reevaluation | None,
) -> pd.DataFrame:
    """Two columns, ``field`` and ``value``: what was studied, on what, with what budget."""
    counts = trials["trial.state"].value_counts()
    states = ", ".join(
        f"{int(counts.get(s, 0))} {name}" for s, name in STATES.items() if counts.get(s)
    )
    finished = int(trials["trial.state"].isin(FINISHED).sum())
    budget = spec.study.n_trials * len(studies)
    starts = pd.to_datetime(trials["trial.datetime_start"]).dropna()
    ends = pd.to_datetime(trials["trial.datetime_complete"]).dropna()
    wall = (ends.max() - starts.min()).total_seconds() if len(starts) and len(ends) else math.nan
    rows = [
        ("study", spec.study.name),
        ("mode", spec.study.mode),
        ("Optuna studies", ", ".join(loaded.ref.name for loaded in studies)),
        ("dataset", f"{spec.data.dataset} ({splits.task})"),
        (
            "rows train / val / test",
            f"{len(splits.X_train)} / {len(splits.X_val)} / {len(splits.X_test)}",
        ),
        ("features", str(splits.n_features)),
    ]
    if splits.task == "classification":
        rows += [
            ("classes", str(splits.n_classes)),
            ("majority-class fraction (train)", f"{class_balance(splits.y_train):.4f}"),
        ]
    rows += [
        ("objective", f"{spec.study.metric} ({spec.study.optuna_direction})"),
        (
            "sampler / pruner / seed",
            f"{spec.study.sampler} / {spec.study.pruner} / {spec.study.seed}",
        ),
        ("trials per state", states or "no trials"),
        ("budget used", f"{finished} of {budget} finished trials ({finished / budget:.0%})"),
        ("trial compute time", f"{trials['trial.duration_s'].sum():.1f} s"),
        ("study wall time", f"{wall:.1f} s" if math.isfinite(wall) else "n/a"),
    ]
    if spec.study.timeout is not None:
        rows.append(("timeout per study", f"{spec.study.timeout:g} s"))
    if reevaluation is not None:
        seeds = reevaluation.seeds
        rows += [
            ("re-evaluation seeds", f"K = {len(seeds)}: {', '.join(map(str, seeds))}"),
            ("re-evaluation parent run", reevaluation.parent_run_id),
        ]
    rows += [
        (
            "confidence level",
            f"{spec.report.confidence:g} (alpha = {1 - spec.report.confidence:.2g})",
        ),
        ("Optuna storage", mask_url(storage_url)),
        ("MLflow tracking", f"{mask_url(tracking_uri)} (experiment {experiment_id})"),
        ("spec hash", spec.fingerprint()),
    ]
    return pd.DataFrame(rows, columns=["field", "value"])


def state_table(spec: Spec, trials: pd.DataFrame, study_names: list[str]) -> pd.DataFrame:
    """Per Optuna study (those without trials too): trials per state, finished trials and
    the budget."""
    rows = []
    for study in study_names:
        group = trials[trials["trial.study"] == study]
        counts = group["trial.state"].value_counts()
        row = {"study": study}
        row.update({name: int(counts.get(state, 0)) for state, name in STATES.items()})
        row["finished"] = int(group["trial.state"].isin(FINISHED).sum())
        row["budget"] = spec.study.n_trials
        rows.append(row)
    return pd.DataFrame(rows)


def failure_category(reason: object) -> str:
    """Failure reasons grouped by what happened, numbers removed (``fail_reason`` attrs)."""
    if not isinstance(reason, str) or not reason:
        return "no reason recorded (the worker died; its heartbeat expired)"
    head = reason.split(":", 1)[0]
    if head in ("KeyboardInterrupt", "Terminated"):
        return f"interrupted ({head})"
    if "non-finite" in reason:
        return f"diverged: {reason.split(' at epoch', 1)[0]}"
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", reason)[:120]


def failure_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Failed trials counted per reason, with the trials and runs they are."""
    failed = trials[trials["trial.state"] == "FAIL"]
    columns = ["reason", "count", "trials", "run_ids"]
    if failed.empty:
        return pd.DataFrame(columns=columns)
    reasons = failed.get("trial.attrs.fail_reason", pd.Series(None, index=failed.index))
    frame = failed.assign(reason=reasons.map(failure_category))
    rows = []
    for reason, group in frame.groupby("reason", sort=True):
        rows.append(
            {
                "reason": reason,
                "count": len(group),
                "trials": ", ".join(
                    f"{s}#{n}"
                    for s, n in zip(group["trial.study"], group["trial.number"], strict=True)
                ),
                "run_ids": ";".join(r for r in group["run.id"] if isinstance(r, str)),
            }
        )
    return pd.DataFrame(rows, columns=columns).sort_values(
        ["count", "reason"], ascending=[False, True]
    )


def describe_params(kind: str, params: TrialParams) -> str:
    """The values that define a configuration, the ones that are off left out."""
    parts = [f"learning_rate={params.learning_rate:.3g}"]
    if params.strength:
        parts.append(f"strength={params.strength:.3g}")
    if params.regularizer == "elastic_net":
        parts.append(f"l1_ratio={params.l1_ratio:.3g}")
    if params.dropout_rate:
        parts.append(f"dropout_rate={params.dropout_rate:.3g}")
    if params.patience is not None:
        parts.append(f"patience={params.patience}")
    if params.augmentation != "none":
        parts.append(f"augmentation={params.augmentation}({params.augmentation_strength:.3g})")
    parts.append(f"optimizer={params.optimizer}")
    parts.append(f"batch_size={params.batch_size}")
    return ", ".join(parts)


def kind_table(
    spec: Spec, trials: pd.DataFrame, configurations: dict[str, Configuration]
) -> pd.DataFrame:
    """Per kind: trials per state, the best validation value, its configuration and epochs.

    ``best_epoch`` is 0-based (the epoch whose weights were kept); ``epochs_to_best`` is
    the number of epochs trained to reach it.
    """
    metric = spec.study.metric
    rows = []
    for kind in kind_order(trials["trial.kind"].dropna()):
        group = trials[trials["trial.kind"] == kind]
        counts = group["trial.state"].value_counts()
        row: dict = {"kind": kind, "trials": len(group)}
        row.update({STATES[s]: int(counts.get(s, 0)) for s in ("COMPLETE", "PRUNED", "FAIL")})
        row["running"] = int(counts.get("RUNNING", 0) + counts.get("WAITING", 0))
        configuration = configurations.get(kind)
        if configuration is not None:
            best = group[
                (group["trial.study"] == configuration.study)
                & (group["trial.number"] == configuration.trial_number)
            ].iloc[0]
            best_epoch = _first_finite(
                best.get("metrics.best_epoch"), best.get("trial.attrs.best_epoch")
            )
            row.update(
                {
                    f"best_{metric}": configuration.value,
                    "best_trial": f"{configuration.study}#{configuration.trial_number}",
                    "best_epoch": best_epoch,
                    "epochs_to_best": best_epoch + 1,
                    "epochs_run": float(best.get("metrics.epochs_run", math.nan)),
                    "parameters": describe_params(kind, configuration.params),
                    "run_id": configuration.run_id or "",
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def trial_table(trials: pd.DataFrame, task: str) -> pd.DataFrame:
    """Each finished trial once (complete or pruned), with its run; test numbers for
    COMPLETE trials only."""
    finished = trials[trials["trial.state"].isin(FINISHED)]
    finished = finished.drop_duplicates(["trial.study", "trial.number"])
    complete = finished["trial.state"] == "COMPLETE"

    def final(key: str) -> pd.Series:
        column = f"metrics.{key}"
        values = finished[column] if column in finished else pd.Series(np.nan, finished.index)
        return values.where(complete).astype("float64")

    frame = pd.DataFrame(
        {
            "study": finished["trial.study"],
            "trial": finished["trial.number"].astype(int),
            "kind": finished["trial.kind"],
            "state": finished["trial.state"],
            "value": finished["trial.value"].where(complete),
            "best_epoch": final("best_epoch"),
            "test_accuracy" if task == "classification" else "test_r2": final("test_accuracy"),
            "gap_test": final("gap_test"),
            "pruned_at_epoch": finished.get(
                "trial.attrs.pruned_epoch", pd.Series(np.nan, finished.index)
            ).astype("float64"),
            "run_id": finished["run.id"].fillna(""),
        }
    )
    return frame.sort_values(["study", "trial"]).reset_index(drop=True)


def _first_finite(*values: object) -> float:
    for value in values:
        if value is not None and isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return math.nan
