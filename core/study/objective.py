"""One trial: sample a configuration, train it, report each epoch, prune, track.

``run_configuration`` is the pure part (data and params in, metrics out) that the
objective, re-evaluation and reproducibility checks share; ``Objective`` adds Optuna and
the tracker around it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from sklearn.metrics import balanced_accuracy_score, f1_score

from core.data import Splits, load_dataset, make_augmenter
from core.nn import MLP, DivergenceError, Penalty, TrainConfig, TrainResult, evaluate, train
from core.study import interrupts
from core.study.space import TrialParams, suggest
from core.study.spec import Spec

logger = logging.getLogger(__name__)

UNTRACKED_ATTR = "untracked"  # a trial run with tracking off, which has no MLflow run


def worker_name() -> str:
    """Which process runs a trial (host:pid), for studies shared by many workers; asked at
    each trial, so a forked worker names itself, not its parent."""
    return f"{socket.gethostname()}:{os.getpid()}"


FINAL_METRICS = (
    "best_epoch",
    "epochs_run",
    "best_val_loss",
    "best_val_accuracy",
    "final_train_loss",
    "final_train_accuracy",
    "test_loss",
    "test_accuracy",
    "gap_test",
    "gap_val_test",
)


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A 31-bit training seed derived from the study seed and the trial number."""
    state = np.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF


def load_splits(spec: Spec) -> Splits:
    """The dataset and splits a spec describes (the same for every trial of a study)."""
    data = spec.data
    return load_dataset(
        data.dataset,
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
        split_seed=data.split_seed,
        train_fraction=data.train_fraction,
        label_noise=data.label_noise,
        standardize=data.standardize,
        dtype=np.dtype(spec.model.dtype),
        n_samples=data.n_samples,
    )


@dataclass
class Outcome:
    """A trained configuration: its history, restored-weights metrics and the model."""

    params: TrialParams
    seed: int
    result: TrainResult
    metrics: dict[str, float]
    model: MLP


def build_model(spec: Spec, splits: Splits, params: TrialParams, seed: int) -> MLP:
    init_seed, _ = np.random.SeedSequence(seed).spawn(2)
    n_outputs = splits.n_classes if splits.task == "classification" else splits.y_train.shape[1]
    return MLP(
        splits.n_features,
        spec.model.hidden,
        n_outputs,
        activation=spec.model.activation,
        dropout_rate=params.dropout_rate,
        seed=np.random.default_rng(init_seed),
        dtype=np.dtype(spec.model.dtype),
    )


def train_config(spec: Spec, params: TrialParams, seed: int) -> TrainConfig:
    _, train_seed = np.random.SeedSequence(seed).spawn(2)
    penalty_kind = (
        params.regularizer if params.regularizer in ("l1", "l2", "elastic_net") else "none"
    )
    return TrainConfig(
        max_epochs=spec.train.max_epochs,
        batch_size=params.batch_size,
        optimizer=params.optimizer,
        learning_rate=params.learning_rate,
        penalty=Penalty(
            penalty_kind,
            params.strength if penalty_kind != "none" else 0.0,
            l1_ratio=params.l1_ratio,
        ),
        weight_decay=params.strength if params.regularizer == "weight_decay" else 0.0,
        patience=params.patience,
        min_delta=spec.train.min_delta,
        seed=train_seed,
    )


def run_configuration(
    spec: Spec,
    splits: Splits,
    params: TrialParams,
    seed: int,
    *,
    on_epoch=None,
    score_test: bool = True,
) -> Outcome:
    """Train ``params`` with ``seed`` and score the returned (best) weights.

    The test split is read only here and only after training has finished, and only
    when ``score_test`` is True: the sampler and pruner never see it.
    """
    loss = "cross_entropy" if splits.task == "classification" else "mse"
    model = build_model(spec, splits, params, seed)
    config = train_config(spec, params, seed)
    augment = make_augmenter(params.augmentation, params.augmentation_strength, splits)
    result = train(
        model,
        splits.X_train,
        splits.y_train,
        splits.X_val,
        splits.y_val,
        config,
        loss=loss,
        augment=augment,
        on_epoch=on_epoch,
    )
    metrics = final_metrics(model, splits, result, loss, score_test=score_test)
    return Outcome(params=params, seed=seed, result=result, metrics=metrics, model=model)


def final_metrics(
    model: MLP, splits: Splits, result: TrainResult, loss: str, *, score_test: bool
) -> dict[str, float]:
    """Metrics of the weights the model holds (the best epoch's when early stopping ran)."""
    train_loss, train_score = evaluate(model, loss, splits.X_train, splits.y_train)
    metrics = {
        "best_epoch": float(result.best_epoch),
        "epochs_run": float(result.epochs_run),
        "best_val_loss": result.best_val_loss,
        "best_val_accuracy": result.best_val_accuracy,
        "final_train_loss": train_loss,
        "final_train_accuracy": train_score,
    }
    if not score_test:
        return metrics
    test_loss, test_score = evaluate(model, loss, splits.X_test, splits.y_test)
    metrics.update(
        test_loss=test_loss,
        test_accuracy=test_score,
        gap_test=train_score - test_score,
        gap_val_test=result.best_val_accuracy - test_score,
    )
    if splits.task == "classification":
        predicted = np.argmax(model.predict_output(splits.X_test), axis=1)
        metrics["test_balanced_accuracy"] = float(
            balanced_accuracy_score(splits.y_test, predicted)
        )
        metrics["test_macro_f1"] = float(f1_score(splits.y_test, predicted, average="macro"))
    return metrics


def objective_value(spec: Spec, outcome: Outcome) -> float:
    """What Optuna optimizes: the validation metric of the returned weights."""
    if spec.study.metric == "val_loss":
        return outcome.result.best_val_loss
    return outcome.result.best_val_accuracy


class Objective:
    """The Optuna objective of one study (or one arm of a ``per_kind`` study).

    Pass ``finish`` as an Optuna callback (``core.study.loop`` does): it closes each
    trial's MLflow run after Optuna has recorded the trial's state.

    Args:
        spec: The validated spec.
        splits: Data shared by every trial of this process.
        tracker: A ``core.tracking.Tracker``, or None to track nothing.
        parent_run_id: The study's parent run, under which trial runs nest.
        arm: The per-kind arm, or None in joint mode.
    """

    def __init__(
        self,
        spec: Spec,
        splits: Splits,
        *,
        tracker=None,
        parent_run_id: str | None = None,
        arm: str | None = None,
    ) -> None:
        self.spec = spec
        self.splits = splits
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.arm = arm
        self._pending: dict[int, _PendingRun] = {}

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest(trial, self.spec, self.arm)
        seed = trial_seed(self.spec.study.seed, trial.number)
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("regularizer", params.regularizer)
        trial.set_user_attr("worker", worker_name())
        run = None
        if self.tracker is not None:
            run = self.tracker.start_trial(trial, params, seed, parent_run_id=self.parent_run_id)
        else:
            # No run, on purpose: a later tracked session's reconcile must not make one.
            trial.set_user_attr(UNTRACKED_ATTR, True)
        pending = _PendingRun(run)
        self._pending[trial.number] = pending
        epochs_seen = 0

        def on_epoch(epoch: int, record: dict[str, float]) -> None:
            nonlocal epochs_seen
            epochs_seen = epoch + 1
            interrupts.check()  # a Ctrl-C or SIGTERM asked to stop: do it between writes
            if run is not None:
                run.record(epoch, record)
            value = record[self.spec.study.metric]
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} with {value:.6g}")

        try:
            outcome = run_configuration(self.spec, self.splits, params, seed, on_epoch=on_epoch)
            value = objective_value(self.spec, outcome)
            if not math.isfinite(value):
                # Never hand Optuna a NaN: a non-finite objective counts as a divergence.
                raise DivergenceError(
                    epoch=outcome.result.best_epoch,
                    learning_rate=params.learning_rate,
                    what=self.spec.study.metric,
                )
        except optuna.TrialPruned:
            trial.set_user_attr("pruned_epoch", epochs_seen - 1)
            if run is not None:
                run.write()
            raise
        except DivergenceError as error:
            trial.set_user_attr("fail_reason", str(error))
            trial.set_user_attr("fail_epoch", error.epoch)
            logger.warning("trial %d failed: %s", trial.number, error)
            pending.reason = str(error)
            if run is not None:
                run.write()
            raise
        except Exception as error:
            pending.reason = f"{type(error).__name__}: {error}"
            trial.set_user_attr("fail_reason", pending.reason)
            raise
        except BaseException as error:
            # Ctrl-C or SIGTERM: no callback follows, so close the run here, as KILLED.
            reason = f"interrupted ({type(error).__name__})"
            trial.set_user_attr("fail_reason", reason)
            self._pending.pop(trial.number, None)
            if run is not None:
                run.end("FAIL", reason=reason, interrupted=True)
            raise

        for key in ("best_epoch", "test_accuracy", "test_loss"):
            trial.set_user_attr(key, outcome.metrics[key])
        pending.outcome = outcome
        if run is not None:
            run.write(outcome)
        return value

    def finish(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Close the trial's run with the state Optuna recorded (an Optuna callback).

        Runs are closed after Optuna's ``tell``, never before, so the two stores cannot
        disagree about how a trial ended.
        """
        pending = self._pending.pop(trial.number, None)
        if pending is None or pending.run is None:
            return
        state = trial.state.name
        outcome = pending.outcome if state == "COMPLETE" else None
        pending.run.end(state, outcome=outcome, reason=pending.reason)
        if self.parent_run_id is not None:
            self.tracker.log_trial_summary(self.parent_run_id, study, trial)


@dataclass
class _PendingRun:
    """What a trial's run is closed with once Optuna has recorded the trial."""

    run: Any
    outcome: Outcome | None = None
    reason: str | None = None


def params_from_trial(spec: Spec, trial: optuna.trial.FrozenTrial, arm: str | None = None) -> Any:
    """Rebuild a finished trial's configuration from its stored parameters, so it can be
    re-run alone: replays ``suggest`` against the recorded values."""
    fixed = optuna.trial.FixedTrial(trial.params, number=trial.number)
    return suggest(fixed, spec, arm)
