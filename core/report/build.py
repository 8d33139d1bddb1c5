"""``build_report``: collect, re-evaluate, compare, draw, write, and log the report."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.study.objective import load_splits
from core.study.spec import ARMS, REGULARIZERS, Spec

from .caveats import collect_caveats
from .collect import (
    ReportError,
    attach_runs,
    collect_histories,
    collect_runs,
    collect_trials,
    find_experiment,
    load_studies,
    open_client,
    open_storage,
)
from .compare import choose_best, compare, headline, seed_table, summarize, summary_keys
from .importance import parameter_importances
from .metrics import majority_class_baseline, mean_predictor_r2
from .reevaluate import best_configurations, reevaluate, reevaluation_seeds
from .render import render_html, render_markdown, write_tables
from .sections import ReportData, figures_of, sections_of, tables_of
from .summary import failure_table, kind_table, state_table, study_summary, trial_table

logger = logging.getLogger(__name__)

ARTIFACT_PATH = "report"


@dataclass
class ReportResult:
    """What :func:`build_report` wrote and concluded.

    Attributes:
        out_dir: The report directory.
        html: ``report.html`` (self-contained).
        markdown: ``report.md``.
        tables: Every table by name, as written to ``<name>.csv``.
        csv: The CSV path of every table.
        figures: Every figure's PNG path by name.
        verdict: The headline answer.
        caveats: The caveats shown in the report.
        best_kind: The kind chosen on validation, or None.
        reevaluation_parent_run_id: The MLflow parent of the re-evaluation runs.
        new_runs: Re-evaluation runs trained by this build.
        reused_runs: Re-evaluation runs reused from an earlier build.
        logged_run_id: The run the report was logged to as artifacts, or None.
    """

    out_dir: Path
    html: Path
    markdown: Path
    tables: dict[str, pd.DataFrame]
    csv: dict[str, Path]
    figures: dict[str, Path]
    verdict: str
    caveats: list[str]
    best_kind: str | None
    reevaluation_parent_run_id: str | None
    new_runs: int
    reused_runs: int
    logged_run_id: str | None


def build_report(
    spec: Spec,
    *,
    storage_url: str,
    tracking_uri: str,
    out_dir: str | Path,
    seeds: int | None = None,
    log: bool = True,
) -> ReportResult:
    """Build the generalization comparison report of the study ``spec`` describes.

    Reads the trials from Optuna and their runs from MLflow, re-evaluates the best
    configuration of each kind on K fresh seeds (reusing earlier re-evaluation runs),
    compares the kinds, and writes ``report.html``, ``report.md``, the tables as CSV and the
    figures as PNG under ``out_dir``.

    Args:
        spec: The validated spec the study ran with.
        storage_url: The Optuna storage of the study.
        tracking_uri: The MLflow tracking store of the study.
        out_dir: Where to write (created if missing; files of an earlier report with the
            same names are replaced).
        seeds: K, the number of re-evaluation seeds; defaults to the spec's ``[report]
            seeds``.
        log: Whether to log the report as artifacts (under ``report/``) of the study's
            parent run (per_kind mode: of the re-evaluation parent, which spans the arms).
            Re-evaluation runs are logged either way: reusing them depends on it.

    Raises:
        ReportError: A store, the study or its experiment is missing, or ``seeds`` < 1.
    """
    k = spec.report.seeds if seeds is None else seeds
    if k < 1:
        raise ReportError(f"--seeds must be an integer >= 1; got {k}")
    storage = open_storage(storage_url)
    studies = load_studies(spec, storage, storage_url)
    client = open_client(tracking_uri)
    experiment_id = find_experiment(client, spec.study.name, tracking_uri)

    # Collect: one query per source, joined on the run id each trial recorded.
    runs = collect_runs(client, experiment_id)
    trials = attach_runs(collect_trials(studies), runs)
    splits = load_splits(spec)

    # Re-evaluate the best configuration of each kind on K fresh seeds.
    configurations = best_configurations(spec, trials, studies)
    reevaluation = None
    if configurations:
        reevaluation = reevaluate(
            spec,
            configurations,
            reevaluation_seeds(spec.study.seed, k),
            client=client,
            experiment_id=experiment_id,
            runs=runs,
            splits=splits,
        )
        if reevaluation.created:
            runs = collect_runs(client, experiment_id)  # read results back from the store

    # Compare, then write tables, figures and pages.
    stores = {
        "storage_url": storage_url,
        "tracking_uri": tracking_uri,
        "experiment_id": experiment_id,
    }
    data = _analyse(spec, studies, trials, runs, splits, configurations, reevaluation, stores)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    histories = collect_histories(client, [c.run_id for c in configurations.values() if c.run_id])
    written = _write(data, trials, histories, out)

    logged = None
    if log:
        files = [written.html, written.markdown, *written.csv.values(), *written.figures.values()]
        logged = _log_files(client, _report_run(spec, studies, runs, reevaluation), files)
    return ReportResult(
        out_dir=out,
        html=written.html,
        markdown=written.markdown,
        tables=written.tables,
        csv=written.csv,
        figures=written.figures,
        verdict=data.verdict,
        caveats=data.caveats,
        best_kind=data.best_kind,
        reevaluation_parent_run_id=reevaluation.parent_run_id if reevaluation else None,
        new_runs=reevaluation.created if reevaluation else 0,
        reused_runs=reevaluation.reused if reevaluation else 0,
        logged_run_id=logged,
    )


def _analyse(
    spec, studies, trials, runs, splits, configurations, reevaluation, stores
) -> ReportData:
    """Every table and sentence of the report, computed from the collected frames."""
    confidence, task = spec.report.confidence, splits.task
    val_key = f"best_{spec.study.metric}"
    seeds = seed_table(runs, reevaluation, val_key) if reevaluation else pd.DataFrame()
    summary = summarize(seeds, summary_keys(task), confidence)
    best = choose_best(seeds, val_key, spec.study.optuna_direction == "maximize")
    comparisons = compare(seeds, best=best, confidence=confidence, task=task)
    names = [loaded.ref.name for loaded in studies]
    baselines = _baselines(splits)
    caveats = collect_caveats(
        spec,
        trials,
        splits,
        configurations=configurations,
        reevaluation=reevaluation,
        summary=summary,
        comparisons=comparisons,
        searched_kinds=_searched_kinds(spec),
        majority_accuracy=baselines["accuracy"].iloc[0] if task == "classification" else None,
        study_names=names,
    )
    return ReportData(
        spec=spec,
        task=task,
        verdict=headline(
            summary, comparisons, best=best, val_key=val_key, confidence=confidence, task=task
        ),
        caveats=caveats,
        summary=study_summary(spec, studies, trials, splits, reevaluation=reevaluation, **stores),
        states=state_table(spec, trials, names),
        failures=failure_table(trials),
        kinds=kind_table(spec, trials, configurations),
        trials=trial_table(trials, task),
        seeds=seeds,
        reevaluation=summary,
        comparisons=comparisons,
        baselines=baselines,
        importances=parameter_importances(studies, spec.study.seed),
        best_kind=best,
    )


@dataclass
class _Written:
    tables: dict[str, pd.DataFrame]
    csv: dict[str, Path]
    figures: dict[str, Path]
    html: Path
    markdown: Path


def _write(data: ReportData, trials: pd.DataFrame, histories: pd.DataFrame, out: Path) -> _Written:
    """Figures as PNG, tables as CSV, then ``report.html`` and ``report.md`` from both."""
    figures = figures_of(data, trials, histories, out)
    tables = tables_of(data)
    csv = write_tables(tables, out)
    sections = sections_of(data, tables, figures)
    title = f"Generalization report: {data.spec.study.name}"
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(render_html(title, sections), encoding="utf-8")
    md_path.write_text(render_markdown(title, sections), encoding="utf-8")
    logger.info("report written to %s", html_path)
    return _Written(
        tables={table.name: table.frame for table in tables},
        csv=csv,
        figures={figure.name: figure.path for figure in figures},
        html=html_path,
        markdown=md_path,
    )


def _searched_kinds(spec: Spec) -> list[str]:
    if spec.study.mode == "per_kind":
        return list(spec.search.arms or ARMS)
    return [kind for kind in REGULARIZERS if kind in spec.search.regularizers]


def _baselines(splits) -> pd.DataFrame:
    """The trivial predictor every kind must beat, scored on the test split."""
    if splits.task == "classification":
        metrics = majority_class_baseline(splits.y_train, splits.y_test)
        return pd.DataFrame(
            [
                {
                    "predictor": f"majority class (label {int(metrics['label'])})",
                    "accuracy": metrics["accuracy"],
                    "balanced_accuracy": metrics["balanced_accuracy"],
                    "macro_f1": metrics["macro_f1"],
                }
            ]
        )
    r2 = mean_predictor_r2(np.asarray(splits.y_train), np.asarray(splits.y_test))
    return pd.DataFrame([{"predictor": "training mean", "r2": r2}])


def _report_run(spec, studies, runs, reevaluation) -> str | None:
    """The run the report belongs to: the study's parent run in joint mode; in per_kind
    mode, where each arm has a parent of its own, the re-evaluation parent spanning them."""
    if spec.study.mode != "joint":
        return reevaluation.parent_run_id if reevaluation is not None else None
    run_id = studies[0].study.user_attrs.get("mlflow_parent_run_id")
    if run_id is None and "tags.role" in runs:
        found = runs[(runs["tags.role"] == "study") & (runs["tags.study"] == spec.study.name)]
        run_id = found["run.id"].iloc[0] if not found.empty else None
    return run_id


def _log_files(client, run_id: str | None, paths: list[Path]) -> str | None:
    """Log the written files under ``report/`` of ``run_id`` in one call."""
    if run_id is None:
        logger.warning("no parent run to log the report to; it is only on disk")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            shutil.copy2(path, Path(tmp) / path.name)
        client.log_artifacts(run_id, tmp, artifact_path=ARTIFACT_PATH)
    logger.info("report logged to run %s under %s/", run_id, ARTIFACT_PATH)
    return run_id
