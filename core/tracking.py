"""MLflow tracking: one experiment per study, a parent run per Optuna study, a child run per
trial, batched metric writes, and reconciliation of runs whose process died.

Everything goes through an ``MlflowClient`` with explicit run ids, never the fluent
``mlflow.start_run`` stack, which is global to the process and breaks with concurrent
trials. Per-epoch metrics are buffered and written in batches: one write to a local SQLite
store costs a few milliseconds, more than a digits epoch takes to train.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

# MLflow reports usage to its makers by default; a study's runs talk to its own stores only.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# With a tracking server, MLflow prints two "View run" lines to stdout for every run it
# closes (and fetches the run again to do so): a worker's output is for its own messages.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

from mlflow import MlflowClient  # noqa: E402 - after the telemetry switch above
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from core.study.spec import Spec, to_toml

if TYPE_CHECKING:
    from core.study.objective import Outcome
    from core.study.space import TrialParams

logger = logging.getLogger(__name__)

# train_objective is the regularized training loss: the epoch's mean training-mode data loss
# plus the penalty of the end-of-epoch weights.
EPOCH_METRICS = (
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "penalty",
    "gap_loss",
    "train_objective",
)
PARENT_ATTR = "mlflow_parent_run_id"
RUN_ATTR = "mlflow_run_id"
# Optuna state of a trial -> terminal MLflow status of its run.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call
MAX_PARAMS_PER_BATCH = 100
FLUSH_SECONDS = 5.0


def default_artifact_location(tracking_uri: str) -> str | None:
    """For a local ``sqlite:///dir/mlflow.db`` store: ``dir/mlartifacts`` as a file URI.

    Server URIs return None, letting the server choose (its ``--artifacts-destination``).
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db_path = Path(tracking_uri.removeprefix("sqlite:///"))
    return (db_path.parent / "mlartifacts").resolve().as_uri()


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` to ``{"a.b": "1"}``, for MLflow params."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


class Tracker:
    """MLflow access for one study; safe to create in every worker process.

    Args:
        tracking_uri: ``sqlite:///runs/mlflow.db`` or ``http://host:port``.
        spec: The validated spec (its name names the experiment).
    """

    def __init__(self, tracking_uri: str, spec: Spec) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.spec = spec
        self.spec_hash = spec.fingerprint()
        self.experiment_id = self._experiment(spec.study.name)

    def close(self) -> None:
        """Close the pooled connections of a SQLite store (MLflow keeps one store per URI
        for the process), so the file can leave WAL mode; a later call reconnects."""
        # MLflow offers no public way to reach its store's engine; a store without one
        # (a tracking server) has nothing to close.
        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose()

    def _experiment(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            return experiment.experiment_id
        try:
            return self.client.create_experiment(
                name,
                artifact_location=default_artifact_location(self.tracking_uri),
                # Opens the UI on the runs table and charts, not on the GenAI trace views.
                tags={"mlflow.experimentKind": "custom_model_development"},
            )
        except MlflowException:
            # Another worker created it between our lookup and our create.
            return self.client.get_experiment_by_name(name).experiment_id

    def parent_run(self, study: optuna.Study, *, arm: str | None = None) -> str:
        """The study's parent run: reused from the study's attributes, else created once."""
        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id is not None:
            try:
                run = self.client.get_run(run_id)
            except MlflowException:
                run = None
            if run is not None:
                if run.info.status != "RUNNING":
                    self.client.update_run(run_id, status="RUNNING")
                return run_id
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.role = 'study' and tags.study = '{study.study_name}'",
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run_id = self._create_parent(study, arm)
        study.set_user_attr(PARENT_ATTR, run_id)
        return run_id

    def _create_parent(self, study: optuna.Study, arm: str | None) -> str:
        tags = {
            "role": "study",
            "study": study.study_name,
            "spec_hash": self.spec_hash,
            "mode": self.spec.study.mode,
            "mlflow.runName": study.study_name,
        }
        if arm is not None:
            tags["arm"] = arm
        run = self.client.create_run(self.experiment_id, tags=tags)
        run_id = run.info.run_id
        params = flatten(self.spec.resolved())
        items = [Param(k, v) for k, v in sorted(params.items())]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])
        self.client.log_text(run_id, to_toml(self.spec.resolved()), "spec.toml")
        return run_id

    def log_trial_summary(self, parent_run_id: str, study: optuna.Study, trial) -> None:
        """On the parent run, the objective of each finished trial and the best so far,
        with step = trial number: the study's optimization history as an MLflow chart."""
        if trial.state.name != "COMPLETE" or trial.value is None:
            return
        timestamp = int(time.time() * 1000)
        metrics = [Metric("trial_value", float(trial.value), timestamp, trial.number)]
        with contextlib.suppress(ValueError):  # no best value yet
            metrics.append(Metric("best_value", float(study.best_value), timestamp, trial.number))
        try:
            self.client.log_batch(parent_run_id, metrics=metrics)
        except Exception:
            logger.exception("could not log trial %d to the parent run", trial.number)

    def end_parent(self, run_id: str, status: str) -> None:
        """Close the parent run: FINISHED when the budget is spent, KILLED or FAILED else."""
        self.client.set_terminated(run_id, status=status)

    def start_trial(
        self, trial: optuna.Trial, params: TrialParams, seed: int, *, parent_run_id: str
    ) -> TrialRun:
        """Open the trial's child run and point trial and run at each other."""
        tags = self._trial_tags(
            trial.study.study_name, trial.number, params.regularizer, "RUNNING", parent_run_id
        )
        run = self.client.create_run(self.experiment_id, tags=tags)
        run_id = run.info.run_id
        trial.set_user_attr(RUN_ATTR, run_id)
        values = {f"sampled.{k}": v for k, v in trial.params.items()}
        values.update(params.as_dict())
        values["seed"] = seed
        values.update(_fixed_params(self.spec))
        items = [Param(k, str(v)) for k, v in sorted(values.items())]
        self.client.log_batch(run_id, params=items)
        return TrialRun(self.client, run_id)

    def reconcile(self, study: optuna.Study, *, grace_seconds: float = 0.0) -> int:
        """Close RUNNING runs whose trial is no longer running (its process died), and give
        a closed run to each failed trial that has none (its worker died between creating
        the trial and its run), so every trial has exactly one run.

        Returns the number of runs closed or created. A trial that is still RUNNING keeps
        its run open: its worker may be alive; once heartbeats fail it, the next reconcile
        closes the run. So does a trial whose worker may still be closing its run (see
        ``_worker_gone``): a live worker closes it right after telling Optuna. Call it under the
        study's lock, so two workers do not both create the run of one failed trial.
        """
        from core.study.objective import UNTRACKED_ATTR

        # Trials first: a run is made before its trial can end, so a trial that had ended
        # by now and has no run below never got one.
        trials = study.get_trials(deepcopy=False)
        # A failed trial that does not name its run may have none: only then are all the
        # study's runs read; otherwise the open ones are enough.
        maybe_lost = [
            t
            for t in trials
            if t.state == optuna.trial.TrialState.FAIL
            and RUN_ATTR not in t.user_attrs
            and not t.user_attrs.get(UNTRACKED_ATTR)  # tracking was off: no run on purpose
        ]
        where = f"tags.role = 'trial' and tags.study = '{study.study_name}'"
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=where if maybe_lost else f"{where} and attributes.status = 'RUNNING'",
            max_results=50_000,
        )
        by_number = {t.number: t for t in trials}
        now = datetime.datetime.now()
        changed = 0
        for run in runs:
            if run.info.status != "RUNNING":
                continue
            trial = by_number.get(int(run.data.tags.get("trial_number", -1)))
            state = trial.state.name if trial is not None else "FAIL"
            if state in ("RUNNING", "WAITING"):
                continue
            if trial is not None and not _worker_gone(trial, now, grace_seconds):
                continue
            tags = [RunTag("state", state), RunTag("closed_by", "reconcile")]
            if state == "FAIL":
                tags.append(RunTag("fail_reason", _fail_reason(trial, mid_trial=True)))
            self.client.log_batch(run.info.run_id, tags=tags)
            self.client.set_terminated(run.info.run_id, status=RUN_STATUS.get(state, "FAILED"))
            changed += 1
        tracked = {int(run.data.tags.get("trial_number", -1)) for run in runs}
        for trial in maybe_lost:
            if trial.number not in tracked:
                self._run_for_lost_trial(study, trial)
                changed += 1
        if changed:
            logger.info("closed or created %d MLflow run(s) of dead workers' trials", changed)
        return changed

    def _trial_tags(
        self, study_name: str, number: int, regularizer: str, state: str, parent: str | None
    ) -> dict[str, str]:
        """The tags every trial run carries, however it was made."""
        tags = {
            "mlflow.runName": f"trial-{number:03d}-{regularizer}",
            "role": "trial",
            "study": study_name,
            "trial_number": str(number),
            "regularizer": regularizer,
            "spec_hash": self.spec_hash,
            "state": state,
        }
        if parent is not None:
            tags["mlflow.parentRunId"] = parent
        return tags

    def _run_for_lost_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """A run, closed as FAILED, for a failed trial whose worker died before making one."""
        regularizer = str(trial.params.get("regularizer", "unknown"))
        parent = study.user_attrs.get(PARENT_ATTR)
        tags = self._trial_tags(study.study_name, trial.number, regularizer, "FAIL", parent)
        tags["closed_by"] = "reconcile"
        tags["fail_reason"] = _fail_reason(trial, mid_trial=False)
        run_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
        params = [Param(f"sampled.{k}", str(v)) for k, v in sorted(trial.params.items())]
        if params:
            self.client.log_batch(run_id, params=params[:MAX_PARAMS_PER_BATCH])
        self.client.set_terminated(run_id, status="FAILED")


def _worker_gone(
    trial: optuna.trial.FrozenTrial, now: datetime.datetime, grace_seconds: float
) -> bool:
    """Whether nobody will close the finished ``trial``'s run.

    Its worker is gone when Optuna failed the trial because its heartbeat stopped (a
    worker sets ``fail_reason`` whenever it fails a trial itself); when that worker is this
    process, which closes its runs before it reconciles; or when it ran on this host and
    its process no longer exists. A worker on another host gets ``grace_seconds`` from the
    trial's end to close the run itself.
    """
    from core.study.objective import worker_name

    if trial.state.name == "FAIL" and "fail_reason" not in trial.user_attrs:
        return True
    worker = str(trial.user_attrs.get("worker", ""))
    me = worker_name()
    if worker == me:
        return True
    host, _, pid = worker.rpartition(":")
    here = me.rpartition(":")[0]
    if host == here and pid.isdigit() and not _process_exists(int(pid)):
        return True
    ended = trial.datetime_complete
    return ended is None or (now - ended).total_seconds() >= grace_seconds


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _fail_reason(trial: optuna.trial.FrozenTrial | None, mid_trial: bool) -> str:
    reason = (
        "the worker died mid-trial (its heartbeat stopped)"
        if mid_trial
        else "the trial ended before its run was created (its worker died or was stopped)"
    )
    if trial is not None:
        reason = trial.user_attrs.get("fail_reason", reason)
    return str(reason)[:5000]


def _fixed_params(spec: Spec) -> dict[str, Any]:
    """The spec values that shape every run (not searched)."""
    return {
        "dataset": spec.data.dataset,
        "split_seed": spec.data.split_seed,
        "train_fraction": spec.data.train_fraction,
        "label_noise": spec.data.label_noise,
        "hidden": ",".join(str(h) for h in spec.model.hidden),
        "activation": spec.model.activation,
        "dtype": spec.model.dtype,
        "max_epochs": spec.train.max_epochs,
        "metric": spec.study.metric,
    }


class TrialRun:
    """One trial's child run: buffers epoch metrics and closes with the trial's state."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self._pending: list[Metric] = []
        self._history: list[dict[str, float]] = []
        self._last_flush = time.monotonic()
        self._written = False

    def record(self, epoch: int, record: dict[str, float]) -> None:
        """Buffer one epoch; write at most every ``FLUSH_SECONDS`` so the UI stays live."""
        self._history.append(record)
        timestamp = int(time.time() * 1000)
        for key in EPOCH_METRICS:
            value = record.get(key)
            if value is not None and np.isfinite(value):
                self._pending.append(Metric(key, float(value), timestamp, epoch))
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        # Known shortcoming: MLflow's SQL store spends about 0.05-0.1 ms of CPU per metric
        # row in its ORM (20-40 ms for a trial of 53 epochs), on the trial's critical path.
        # A thread cannot hide it (it holds the GIL). A writer process fed by a pipe was
        # tried: on 2 cores the trainer's BLAS already uses both, so training slowed by
        # the writer's CPU and the study took as long. Only fewer rows would help, which
        # the per-epoch metric contract (EPOCH_METRICS, listed in the README) rules out.
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_METRICS_PER_BATCH):
            self.client.log_batch(
                self.run_id, metrics=pending[start : start + MAX_METRICS_PER_BATCH]
            )
        self._last_flush = time.monotonic()

    def write(self, outcome: Outcome | None = None) -> None:
        """Everything but the status: buffered epochs, history.csv, and for a finished
        trial its final metrics and weights. Called before Optuna records the trial, so a
        worker killed right after still leaves a complete run behind."""
        try:
            self._write(outcome)
        except Exception:
            logger.exception("could not write MLflow run %s", self.run_id)

    def _write(self, outcome: Outcome | None) -> None:
        if self._written:
            return
        self._written = True
        # The final metrics ride with the last epochs, and both files go in one call: each
        # MLflow call is a transaction of its own (and each artifact call a run lookup).
        if outcome is not None:
            timestamp = int(time.time() * 1000)
            self._pending.extend(
                Metric(key, float(value), timestamp, 0)
                for key, value in outcome.metrics.items()
                if np.isfinite(value)
            )
        self.flush()
        if not self._history and outcome is None:
            return
        with tempfile.TemporaryDirectory() as tmp:
            if self._history:
                (Path(tmp) / "history.csv").write_text(_history_csv(self._history))
            if outcome is not None:
                np.savez(Path(tmp) / "weights.npz", **outcome.model.state_dict())
            self.client.log_artifacts(self.run_id, tmp)

    def end(
        self,
        state: str,
        *,
        outcome: Outcome | None = None,
        reason: str | None = None,
        interrupted: bool = False,
    ) -> None:
        """Write what is not written yet, the ``state`` tag and the terminal status.

        Errors here are logged, not raised: a tracking failure must not hide the trial's
        own outcome (or an interrupt) from Optuna.
        """
        try:
            self._write(outcome)
            tags = [RunTag("state", state)]
            if reason and state != "COMPLETE":
                tags.append(RunTag("fail_reason", reason[:5000]))
            self.client.log_batch(self.run_id, tags=tags)
            status = "KILLED" if interrupted else RUN_STATUS[state]
            self.client.set_terminated(self.run_id, status=status)
        except Exception:
            logger.exception("could not close MLflow run %s", self.run_id)


def _history_csv(history: list[dict[str, float]]) -> str:
    keys = list(history[0])
    out = io.StringIO()
    out.write("epoch," + ",".join(keys) + "\n")
    for epoch, record in enumerate(history):
        out.write(f"{epoch}," + ",".join(repr(float(record[k])) for k in keys) + "\n")
    return out.getvalue()
