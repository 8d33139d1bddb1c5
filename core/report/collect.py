"""Read the stores into tidy DataFrames, one function per source, with prefixed columns.

- :func:`collect_trials` (Optuna): one row per trial, columns ``trial.*``,
  ``trial.params.*`` and ``trial.attrs.*``.
- :func:`collect_runs` (MLflow): one row per run of the experiment, columns ``run.*``,
  ``tags.*``, ``params.*`` and ``metrics.*`` (the latest value of each metric), from one
  paged search, never one query per run or per metric.
- :func:`collect_histories` (MLflow artifacts): per-epoch rows ``run.id``, ``epoch``,
  ``history.*`` for a few runs, one artifact download per run.

A metric a run does not have is NaN. Nothing here writes to either store.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from core.study.runner import StudyRef, study_refs
from core.study.spec import Spec
from core.study.urls import mask_url
from core.tracking import RUN_ATTR

logger = logging.getLogger(__name__)

PAGE_SIZE = 50_000  # MLflow's largest search page
RUN_COLUMNS = ("run.id", "run.status", "run.name", "run.start_time", "run.end_time")
TRIAL_COLUMNS = (
    "trial.study",
    "trial.arm",
    "trial.kind",
    "trial.number",
    "trial.state",
    "trial.value",
    "trial.datetime_start",
    "trial.datetime_complete",
    "trial.duration_s",
    "trial.last_step",
    "trial.last_intermediate",
)


class ReportError(ValueError):
    """A report that cannot be built; the message names what is missing and what to do."""


@dataclass(frozen=True)
class LoadedStudy:
    """An Optuna study of the spec and the reference (name, arm) it was opened under."""

    ref: StudyRef
    study: optuna.Study


def open_storage(storage_url: str) -> optuna.storages.RDBStorage:
    """Open an existing Optuna storage for reading; never creates a database or tables."""
    masked = mask_url(storage_url)
    if storage_url.startswith("sqlite:///"):
        path = Path(storage_url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ReportError(
                f"no Optuna storage at {masked!r}: {str(path)!r} does not exist; run "
                "`regstudy run SPEC` first or pass the --storage the study used"
            )
    try:
        return optuna.storages.RDBStorage(storage_url, skip_table_creation=True)
    except Exception as error:  # SQLAlchemy raises many kinds; report one line
        raise ReportError(
            f"Optuna storage {masked!r} cannot be opened: {type(error).__name__}: "
            f"{str(error).splitlines()[0]}"
        ) from None


def open_client(tracking_uri: str) -> MlflowClient:
    """An MLflow client over an existing tracking store (a missing SQLite file is an error,
    not a new empty store)."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ReportError(
                f"no MLflow store at {mask_url(tracking_uri)!r}: {str(path)!r} does not "
                "exist; pass the --tracking-uri the study used"
            )
    return MlflowClient(tracking_uri)


def load_studies(
    spec: Spec, storage: optuna.storages.BaseStorage, storage_url: str
) -> list[LoadedStudy]:
    """Every Optuna study of ``spec`` that exists; an error when none does.

    Raises:
        ReportError: No study of the spec exists, or one was made from other spec values.
    """
    loaded: list[LoadedStudy] = []
    for ref in study_refs(spec):
        try:
            study = optuna.load_study(study_name=ref.name, storage=storage)
        except KeyError:
            continue
        stored_hash = study.user_attrs.get("spec_hash")
        if stored_hash is not None and stored_hash != spec.fingerprint():
            raise ReportError(
                f"study {ref.name!r} in {mask_url(storage_url)} was created from other spec "
                f"values (spec hash {stored_hash}, this spec {spec.fingerprint()}); report it "
                "with the spec that ran it"
            )
        loaded.append(LoadedStudy(ref, study))
    if not loaded:
        names = sorted(optuna.get_all_study_names(storage))
        wanted = ", ".join(repr(ref.name) for ref in study_refs(spec))
        known = ", ".join(repr(name) for name in names[:20]) or "none"
        raise ReportError(
            f"study {wanted} does not exist in {mask_url(storage_url)} (studies there: "
            f"{known}); run `regstudy run SPEC` first or check [study] name and --storage"
        )
    return loaded


def trial_kind(study: LoadedStudy, trial: optuna.trial.FrozenTrial) -> str | None:
    """The regularizer kind a trial belongs to: its arm in per_kind mode, else the
    ``regularizer`` it sampled (None for a trial that never got that far)."""
    if study.ref.arm is not None:
        return study.ref.arm
    return trial.user_attrs.get("regularizer", trial.params.get("regularizer"))


def collect_trials(studies: list[LoadedStudy]) -> pd.DataFrame:
    """One row per trial of every study: state, value, timing, parameters and attributes."""
    rows = []
    for loaded in studies:
        for trial in loaded.study.get_trials(deepcopy=False):
            start, end = trial.datetime_start, trial.datetime_complete
            steps = sorted(trial.intermediate_values)
            row = {
                "trial.study": loaded.ref.name,
                "trial.arm": loaded.ref.arm,
                "trial.kind": trial_kind(loaded, trial),
                "trial.number": trial.number,
                "trial.state": trial.state.name,
                "trial.value": math.nan if trial.value is None else float(trial.value),
                "trial.datetime_start": start,
                "trial.datetime_complete": end,
                "trial.duration_s": (end - start).total_seconds() if start and end else math.nan,
                "trial.last_step": steps[-1] if steps else math.nan,
                "trial.last_intermediate": (
                    float(trial.intermediate_values[steps[-1]]) if steps else math.nan
                ),
            }
            row.update({f"trial.params.{k}": v for k, v in trial.params.items()})
            row.update({f"trial.attrs.{k}": v for k, v in trial.user_attrs.items()})
            rows.append(row)
    return pd.DataFrame(rows, columns=_columns(TRIAL_COLUMNS, rows))


def find_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of the experiment named after the spec.

    Raises:
        ReportError: The experiment does not exist (the study ran with ``--no-tracking``
            or against another tracking store).
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        raise ReportError(
            f"no MLflow experiment {name!r} in {mask_url(tracking_uri)}; the report reads the "
            "runs of the study, so pass the --tracking-uri it ran with (a study run with "
            "--no-tracking cannot be reported)"
        )
    return experiment.experiment_id


def collect_runs(client: MlflowClient, experiment_id: str) -> pd.DataFrame:
    """Every active run of the experiment: status, timing, tags, params, latest metrics."""
    rows = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], max_results=PAGE_SIZE, page_token=token, order_by=["start_time ASC"]
        )
        for run in page:
            row = {
                "run.id": run.info.run_id,
                "run.status": run.info.status,
                "run.name": run.info.run_name,
                "run.start_time": run.info.start_time,
                "run.end_time": run.info.end_time,
            }
            row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
            row.update({f"params.{k}": v for k, v in run.data.params.items()})
            row.update({f"metrics.{k}": float(v) for k, v in run.data.metrics.items()})
            rows.append(row)
        token = page.token
        if not token:
            break
    frame = pd.DataFrame(rows, columns=_columns(RUN_COLUMNS, rows))
    metric_columns = [c for c in frame.columns if c.startswith("metrics.")]
    frame[metric_columns] = frame[metric_columns].astype("float64")
    return frame


def attach_runs(trials: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Each trial with the columns of its own MLflow run (NaN when it has none).

    A trial's run is the one named by its ``mlflow_run_id`` attribute. Only a trial
    without that attribute falls back to the trial runs tagged with its study and number,
    taking the latest whose ``state`` tag matches the trial's state; so a duplicate run of
    the same trial number (a crashed worker's, a rerun's) is never joined twice.
    """
    attr = f"trial.attrs.{RUN_ATTR}"
    run_ids = trials[attr] if attr in trials else pd.Series(None, index=trials.index)
    known = set(runs["run.id"])
    chosen = [
        run_id if isinstance(run_id, str) and run_id in known else _fallback_run(row, runs)
        for run_id, (_, row) in zip(run_ids, trials.iterrows(), strict=True)
    ]
    joined = trials.assign(**{"run.id": chosen})
    return joined.merge(runs, on="run.id", how="left", validate="many_to_one")


def _fallback_run(trial: pd.Series, runs: pd.DataFrame) -> str | None:
    needed = ("tags.role", "tags.study", "tags.trial_number", "tags.state")
    if any(column not in runs for column in needed):
        return None
    match = runs[
        (runs["tags.role"] == "trial")
        & (runs["tags.study"] == trial["trial.study"])
        & (runs["tags.trial_number"] == str(trial["trial.number"]))
        & (runs["tags.state"] == trial["trial.state"])
    ]
    if match.empty:
        return None
    return str(match.sort_values("run.start_time")["run.id"].iloc[-1])


def collect_histories(client: MlflowClient, run_ids: list[str]) -> pd.DataFrame:
    """Per-epoch history of a few runs from their ``history.csv`` artifacts.

    One download per run; a run without the artifact falls back to the MLflow metric
    history of ``train_loss`` and ``val_loss`` (two queries). Columns: ``run.id``,
    ``epoch`` and ``history.<key>`` for every key the history holds.
    """
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in dict.fromkeys(run_ids):
            try:
                path = client.download_artifacts(run_id, "history.csv", str(Path(tmp) / run_id))
                history = pd.read_csv(path)
            except (MlflowException, OSError) as error:
                logger.debug("run %s has no history.csv (%s); reading metrics", run_id, error)
                history = _metric_history(client, run_id)
            history = history.rename(columns=lambda c: c if c == "epoch" else f"history.{c}")
            frames.append(history.assign(**{"run.id": run_id}))
    if not frames:
        return pd.DataFrame(columns=["run.id", "epoch"])
    return pd.concat(frames, ignore_index=True)


def _metric_history(client: MlflowClient, run_id: str) -> pd.DataFrame:
    series = {}
    for key in ("train_loss", "val_loss"):
        points = client.get_metric_history(run_id, key)
        series[key] = pd.Series({m.step: m.value for m in points}, dtype="float64")
    frame = pd.DataFrame(series)
    return frame.rename_axis("epoch").reset_index()


def _columns(base: tuple[str, ...], rows: list[dict]) -> list[str]:
    """The base columns, then every other key in first-seen order (stable across builds)."""
    extra = dict.fromkeys(key for row in rows for key in row if key not in base)
    return [*base, *extra]
