"""Figures of the report, drawn on matplotlib's Agg canvas (no display, no pyplot state).

Every figure colors a kind the same way (:data:`KIND_COLORS`, the Okabe-Ito palette,
which stays distinguishable for the common forms of color blindness).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .compare import SCORE, score_label
from .reevaluate import kind_order

KIND_COLORS = {
    "none": "#666666",
    "l1": "#E69F00",
    "l2": "#0072B2",
    "elastic_net": "#009E73",
    "weight_decay": "#D55E00",
    "dropout": "#CC79A7",
    "early_stopping": "#56B4E9",
    "augmentation": "#B59B00",
}
# The MLflow param that measures how strongly each kind regularizes, and its scale.
STRENGTH_OF = {
    "l1": ("params.strength", "strength", True),
    "l2": ("params.strength", "strength", True),
    "elastic_net": ("params.strength", "strength", True),
    "weight_decay": ("params.strength", "decay", True),
    "dropout": ("params.dropout_rate", "dropout rate", False),
    "early_stopping": ("params.patience", "patience (epochs)", False),
    "augmentation": ("params.augmentation_strength", "augmentation strength", True),
}
DPI = 100
MIN_WIDTH = 7.0


def kind_color(kind: str) -> str:
    """The color of a kind in every figure (black for an unknown kind)."""
    return KIND_COLORS.get(kind, "#000000")


def save(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as PNG through the Agg canvas and return the path."""
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _grid(n_panels: int, *, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list]:
    ncols = max(1, min(3, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    # At least MIN_WIDTH wide, so a one-panel figure still fits its title.
    size = (max(MIN_WIDTH, width * ncols), height * nrows + 0.4)
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for extra in axes[n_panels:]:
        extra.set_visible(False)
    return figure, axes[:n_panels]


def _empty(message: str) -> Figure:
    figure = Figure(figsize=(6, 2), layout="constrained")
    axes = figure.subplots()
    axes.axis("off")
    axes.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return figure


def learning_curves(histories: pd.DataFrame, best: pd.DataFrame) -> Figure:
    """Train and validation loss (evaluation mode) per epoch of each kind's best trial.

    Args:
        histories: ``run.id``, ``epoch``, ``history.train_loss``, ``history.val_loss``.
        best: One row per kind: ``kind``, ``run_id``, ``best_trial``, ``best_epoch``.
    """
    rows = best[best["run_id"].isin(set(histories.get("run.id", [])))]
    if rows.empty:
        return _empty("No history of a best trial was found.")
    figure, axes = _grid(len(rows))
    for ax, (_, row) in zip(axes, rows.iterrows(), strict=True):
        curve = histories[histories["run.id"] == row["run_id"]].sort_values("epoch")
        color = kind_color(row["kind"])
        ax.plot(curve["epoch"], curve["history.train_loss"], "--", color=color, label="train")
        ax.plot(curve["epoch"], curve["history.val_loss"], "-", color=color, label="validation")
        if math.isfinite(row["best_epoch"]):
            ax.axvline(row["best_epoch"], color="#999999", linestyle=":", label="kept epoch")
        ax.set_title(f"{row['kind']} ({row['best_trial']})", color=color)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize="small")
    figure.suptitle("Learning curves of each kind's best trial (evaluation mode)")
    return figure


def test_score_by_kind(
    seeds: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    task: str,
    confidence: float,
    reference: tuple[str, float] | None,
) -> Figure:
    """Mean test score per kind with its t-interval, and every seed's score as a dot."""
    if summary.empty:
        return _empty("No re-evaluated configuration.")
    kinds = list(summary["kind"])
    figure = Figure(figsize=(max(MIN_WIDTH, 1.3 * len(kinds) + 2), 4), layout="constrained")
    ax = figure.subplots()
    for position, kind in enumerate(kinds):
        row = summary[summary["kind"] == kind].iloc[0]
        mean, low, high = row[f"{SCORE}.mean"], row[f"{SCORE}.ci_low"], row[f"{SCORE}.ci_high"]
        error = [[mean - low], [high - mean]] if math.isfinite(low) else None
        ax.errorbar(
            position,
            mean,
            yerr=error,
            fmt="o",
            color=kind_color(kind),
            capsize=6,
            markersize=8,
            linewidth=2,
        )
        values = seeds[seeds["kind"] == kind][SCORE].to_numpy()
        offsets = np.linspace(-0.06, 0.06, len(values)) if len(values) > 1 else [0.0]
        ax.scatter(
            position + 0.18 + np.asarray(offsets), values, s=14, color=kind_color(kind), alpha=0.6
        )
    _reference_line(ax, reference)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_xlim(-0.5, len(kinds) - 0.5)
    ax.set_ylabel(score_label(task))
    ax.set_title(
        f"Mean and {confidence:.0%} t-interval over {int(summary['n_seeds'].max())} seeds, "
        "with each seed"
    )
    return figure


def _reference_line(ax, reference: tuple[str, float] | None) -> None:
    """A dashed line at the trivial predictor's score, or a note when it is far below the
    kinds' scores (drawing it would squash their intervals into a flat line)."""
    if reference is None or not math.isfinite(reference[1]):
        return
    low, high = ax.get_ylim()
    name, value = reference
    if value >= low - 0.25 * (high - low):
        ax.axhline(value, color="#333333", linestyle="--", linewidth=1, label=name)
        ax.legend(fontsize="small", loc="best")
        return
    ax.text(
        0.99,
        0.02,
        f"{name}: {value:.4f} (below the axis)",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize="small",
        color="#333333",
    )


def _strength_panels(complete: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(kind, panel title, trials) per kind that has a strength; augmentation gets one panel
    per augmentation type, since noise (a standard deviation) and shift (pixels) do not
    share an axis."""
    panels = []
    for kind in kind_order(complete["trial.kind"].dropna()):
        if kind not in STRENGTH_OF or STRENGTH_OF[kind][0] not in complete:
            continue
        group = complete[complete["trial.kind"] == kind]
        if kind == "augmentation" and "params.augmentation" in group:
            for name, part in group.groupby("params.augmentation", sort=True):
                panels.append((kind, f"{kind} ({name})", part))
        else:
            panels.append((kind, kind, group))
    return panels


def gap_vs_strength(trials: pd.DataFrame, *, task: str) -> Figure:
    """Train-minus-test gap of every COMPLETE trial against its kind's strength."""
    complete = trials[trials["trial.state"] == "COMPLETE"]
    panels = _strength_panels(complete) if "metrics.gap_test" in complete else []
    if not panels:
        return _empty("No searched kind has a strength to plot the gap against.")
    figure, axes = _grid(len(panels))
    for ax, (kind, title, group) in zip(axes, panels, strict=True):
        column, label, log = STRENGTH_OF[kind]
        x = pd.to_numeric(group[column], errors="coerce")
        ax.scatter(x, group["metrics.gap_test"], color=kind_color(kind), s=22)
        ax.axhline(0.0, color="#999999", linewidth=1)
        if log and (x > 0).all() and x.notna().any():
            ax.set_xscale("log")
        ax.set_title(title, color=kind_color(kind))
        ax.set_xlabel(label)
        ax.set_ylabel(f"train - test {'accuracy' if task == 'classification' else 'R2'}")
    figure.suptitle("Generalization gap against regularization strength (completed trials)")
    return figure


def optimization_history(trials: pd.DataFrame, *, metric: str, maximize: bool) -> Figure:
    """Objective value of each trial by trial number, with the best so far per study."""
    complete = trials[trials["trial.state"] == "COMPLETE"]
    if complete.empty:
        return _empty("No completed trial.")
    figure = Figure(figsize=(8, 4), layout="constrained")
    ax = figure.subplots()
    for kind in kind_order(complete["trial.kind"].dropna()):
        group = complete[complete["trial.kind"] == kind]
        ax.scatter(
            group["trial.number"],
            group["trial.value"],
            color=kind_color(kind),
            s=20,
            label=kind,
            zorder=3,
        )
    pruned = trials[trials["trial.state"] == "PRUNED"]
    if not pruned.empty:
        ax.scatter(
            pruned["trial.number"],
            pruned["trial.last_intermediate"],
            marker="x",
            color="#AAAAAA",
            s=18,
            label="pruned (last report)",
        )
    for _, group in complete.groupby("trial.study", sort=True):
        ordered = group.sort_values("trial.number")
        values = ordered["trial.value"].to_numpy()
        running = np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
        arms = ordered["trial.arm"].dropna()
        color = kind_color(arms.iloc[0]) if len(arms) else "#000000"
        ax.step(
            ordered["trial.number"], running, where="post", color=color, linewidth=1.2, alpha=0.8
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number (within its study)")
    ax.set_ylabel(metric)
    ax.set_title("Optimization history: each completed trial, and the best so far")
    ax.legend(fontsize="small", ncols=2)
    return figure


def importance_chart(importances: pd.DataFrame) -> Figure:
    """Hyperparameter importance (Optuna's fANOVA evaluator), one panel per study."""
    if importances.empty:
        return _empty("Hyperparameter importance needs at least two completed trials.")
    studies = list(dict.fromkeys(importances["study"]))
    figure, axes = _grid(len(studies), height=2.6)
    for ax, study in zip(axes, studies, strict=True):
        group = importances[importances["study"] == study].sort_values("importance")
        ax.barh(group["param"], group["importance"], color="#4C72B0")
        ax.set_xlim(0, 1)
        ax.set_title(study, fontsize="medium")
        ax.tick_params(axis="y", labelsize="small")
        ax.set_xlabel("importance (fraction of variance)")
    figure.suptitle("Importance of each parameter for the validation objective")
    return figure


def l2_vs_weight_decay(
    trials: pd.DataFrame, seeds: pd.DataFrame, *, metric: str, task: str
) -> Figure | None:
    """L2 penalty against decoupled weight decay, per optimizer, when both were searched:
    the objective against the strength, and the re-evaluated test score paired by seed."""
    complete = trials[trials["trial.state"] == "COMPLETE"]
    pair = complete[complete["trial.kind"].isin(("l2", "weight_decay"))]
    if set(pair["trial.kind"]) != {"l2", "weight_decay"} or "params.strength" not in pair:
        return None
    optimizers = sorted(pair["params.optimizer"].dropna().unique()) or ["?"]
    figure, axes = _grid(len(optimizers) + 1)
    for ax, optimizer in zip(axes, optimizers, strict=False):
        for kind in ("l2", "weight_decay"):
            group = pair[(pair["trial.kind"] == kind) & (pair["params.optimizer"] == optimizer)]
            x = pd.to_numeric(group["params.strength"], errors="coerce")
            ax.scatter(x, group["trial.value"], color=kind_color(kind), label=kind, s=22)
        ax.set_xscale("log")
        ax.set_xlabel("strength (L2 lambda or decay)")
        ax.set_ylabel(metric)
        ax.set_title(f"optimizer {optimizer}")
        ax.legend(fontsize="small")
    ax = axes[-1]
    scores = seeds[seeds["kind"].isin(("l2", "weight_decay"))] if not seeds.empty else seeds
    if not scores.empty:
        table = scores.pivot(index="seed", columns="kind", values=SCORE)
        for _, values in table.iterrows():
            ax.plot([0, 1], [values.get("l2"), values.get("weight_decay")], color="#999999")
        for position, kind in enumerate(("l2", "weight_decay")):
            if kind in table:
                ax.scatter([position] * len(table), table[kind], color=kind_color(kind), s=30)
    ax.set_xticks([0, 1], ["l2", "weight_decay"])
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylabel(score_label(task))
    ax.set_title("re-evaluated, paired by seed")
    figure.suptitle(
        "L2 penalty vs decoupled weight decay (equal under plain SGD, different under Adam)"
    )
    return figure
