"""Re-evaluation: the best configuration of each kind retrained on K fresh seeds.

A search picks the best of many noisy trials, so the best trial's own test score is an
optimistic, single-seed number. Here each kind's best configuration is trained again on K
seeds that no trial used (the same K for every kind, so results pair by seed) and scored
on the test split through the objective's own ``run_configuration``.

Every re-evaluation is an MLflow run under one parent per study tagged
``role=reevaluation``; each child carries ``reevaluation=true``, ``kind``, ``seed`` and
``config_hash`` (the configuration and the spec values that shape training). A child that
already FINISHED for the same hash and seed is reused, so building a report again trains
nothing new.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from core.data import Splits
from core.nn import DivergenceError
from core.study.objective import params_from_trial, run_configuration
from core.study.space import TrialParams
from core.study.spec import ARMS, Spec
from core.tracking import EPOCH_METRICS, MAX_METRICS_PER_BATCH, MAX_PARAMS_PER_BATCH

from .collect import LoadedStudy

logger = logging.getLogger(__name__)

# Spawn key of the re-evaluation seed stream: trial seeds come from
# SeedSequence([study_seed, trial_number]); these from another branch of the study seed.
REEVALUATION_KEY = 0x5EED
PARENT_ROLE = "reevaluation"
CHILD_ROLE = "reevaluation_run"


@dataclass(frozen=True)
class Configuration:
    """The best completed trial of one kind, ready to be trained again.

    Attributes:
        kind: Regularizer kind (the arm in per_kind mode).
        study: Optuna study the trial belongs to.
        trial_number: Its number in that study.
        value: Its objective value (validation metric).
        run_id: The trial's MLflow run, or None when it has none.
        params: The configuration, rebuilt from the trial's stored parameters.
        config_hash: Hash of ``params`` and the spec values that shape training.
    """

    kind: str
    study: str
    trial_number: int
    value: float
    run_id: str | None
    params: TrialParams
    config_hash: str


@dataclass
class Reevaluation:
    """Which run holds each (kind, seed) result, and what this build had to train."""

    parent_run_id: str
    seeds: list[int]
    run_ids: dict[tuple[str, int], str] = field(default_factory=dict)
    created: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)


def reevaluation_seeds(study_seed: int, k: int) -> list[int]:
    """K 31-bit training seeds derived from the study seed, disjoint from trial seeds.

    Seed ``i`` depends on ``i`` only, so the first K seeds stay the same when K grows and
    the runs of a smaller K are reused.
    """
    seeds = []
    for index in range(k):
        sequence = np.random.SeedSequence(study_seed, spawn_key=(REEVALUATION_KEY, index))
        seeds.append(int(sequence.generate_state(1)[0]) & 0x7FFFFFFF)
    return seeds


def config_hash(spec: Spec, params: TrialParams) -> str:
    """12 hex digits identifying a configuration trained under ``spec``."""
    text = json.dumps({"spec": spec.fingerprint(), "params": params.as_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def kind_order(kinds) -> list[str]:
    """Kinds in the order of ``core.study.spec.ARMS`` (the baseline ``none`` first)."""
    rank = {kind: index for index, kind in enumerate(ARMS)}
    return sorted(set(kinds), key=lambda kind: (rank.get(kind, len(rank)), kind))


def best_configurations(
    spec: Spec, trials: pd.DataFrame, studies: list[LoadedStudy]
) -> dict[str, Configuration]:
    """The best COMPLETE trial of each kind (ties go to the lower trial number).

    Pruned, failed and running trials never qualify, whatever their partial metrics.
    """
    maximize = spec.study.optuna_direction == "maximize"
    by_name = {loaded.study.study_name: loaded for loaded in studies}
    complete = trials[(trials["trial.state"] == "COMPLETE") & trials["trial.kind"].notna()]
    configurations: dict[str, Configuration] = {}
    for kind in kind_order(complete["trial.kind"]):
        group = complete[complete["trial.kind"] == kind]
        best = group.sort_values(
            ["trial.value", "trial.study", "trial.number"], ascending=[not maximize, True, True]
        ).iloc[0]
        loaded = by_name[best["trial.study"]]
        frozen = _frozen(loaded, int(best["trial.number"]))
        params = params_from_trial(spec, frozen, loaded.ref.arm)
        run_id = best.get("run.id")
        configurations[kind] = Configuration(
            kind=kind,
            study=str(best["trial.study"]),
            trial_number=int(best["trial.number"]),
            value=float(best["trial.value"]),
            run_id=run_id if isinstance(run_id, str) else None,
            params=params,
            config_hash=config_hash(spec, params),
        )
    return configurations


def _frozen(loaded: LoadedStudy, number: int):
    for trial in loaded.study.get_trials(deepcopy=False):
        if trial.number == number:
            return trial
    raise KeyError(f"trial {number} is not in study {loaded.study.study_name!r}")


def reevaluate(
    spec: Spec,
    configurations: dict[str, Configuration],
    seeds: list[int],
    *,
    client: MlflowClient,
    experiment_id: str,
    runs: pd.DataFrame,
    splits: Splits,
) -> Reevaluation:
    """Make sure every (kind, seed) has a FINISHED re-evaluation run; train the missing.

    Args:
        spec: The validated spec.
        configurations: Best configuration per kind.
        seeds: The training seeds, the same for every kind.
        client: MLflow client of the study's tracking store.
        experiment_id: The study's experiment.
        runs: Every run of the experiment (:func:`core.report.collect.collect_runs`); the
            existing parent and children are looked up here, not queried again.
        splits: The spec's data.

    Returns:
        The run of each (kind, seed) pair that succeeded, and counts of what was done.
    """
    parent_id, created_parent = _parent(spec, client, experiment_id, runs)
    done = _finished_children(runs, parent_id)
    result = Reevaluation(parent_run_id=parent_id, seeds=list(seeds))
    for kind, configuration in configurations.items():
        for seed in seeds:
            existing = done.get((configuration.config_hash, str(seed)))
            if existing is not None:
                result.run_ids[(kind, seed)] = existing
                result.reused += 1
                continue
            run_id = _train_and_log(
                spec,
                configuration,
                seed,
                client=client,
                experiment_id=experiment_id,
                parent_id=parent_id,
                splits=splits,
                seed_index=seeds.index(seed),
            )
            result.created += 1
            if run_id is None:
                result.failed.append(f"{kind} seed {seed}")
            else:
                result.run_ids[(kind, seed)] = run_id
    if created_parent or result.created:
        client.set_terminated(parent_id, status="FINISHED")
    logger.info(
        "re-evaluation under run %s: %d run(s) reused, %d trained",
        parent_id,
        result.reused,
        result.created,
    )
    return result


def _parent(spec: Spec, client, experiment_id: str, runs: pd.DataFrame) -> tuple[str, bool]:
    if "tags.role" in runs:
        found = runs[(runs["tags.role"] == PARENT_ROLE) & (runs["tags.study"] == spec.study.name)]
        if not found.empty:
            return str(found.sort_values("run.start_time")["run.id"].iloc[0]), False
    tags = {
        "role": PARENT_ROLE,
        "reevaluation": "true",
        "study": spec.study.name,
        "spec_hash": spec.fingerprint(),
        "mlflow.runName": f"{spec.study.name}-reevaluation",
    }
    run = client.create_run(experiment_id, tags=tags)
    return run.info.run_id, True


def _finished_children(runs: pd.DataFrame, parent_id: str) -> dict[tuple[str, str], str]:
    """(config_hash, seed) -> the earliest FINISHED re-evaluation run under the parent."""
    needed = ("tags.reevaluation", "tags.config_hash", "tags.seed", "tags.mlflow.parentRunId")
    if any(column not in runs for column in needed):
        return {}
    children = runs[
        (runs["tags.reevaluation"] == "true")
        & (runs["tags.role"] == CHILD_ROLE)
        & (runs["tags.mlflow.parentRunId"] == parent_id)
        & (runs["run.status"] == "FINISHED")
    ].sort_values("run.start_time", ascending=False)
    return {
        (row["tags.config_hash"], row["tags.seed"]): row["run.id"]
        for _, row in children.iterrows()  # earliest last, so it wins
    }


def _train_and_log(
    spec: Spec,
    configuration: Configuration,
    seed: int,
    *,
    client: MlflowClient,
    experiment_id: str,
    parent_id: str,
    splits: Splits,
    seed_index: int,
) -> str | None:
    """Train one (kind, seed), log it as a child run; None when training diverged."""
    tags = {
        "mlflow.parentRunId": parent_id,
        "mlflow.runName": f"reeval-{configuration.kind}-seed{seed_index}",
        "role": CHILD_ROLE,
        "reevaluation": "true",
        "study": spec.study.name,
        "kind": configuration.kind,
        "seed": str(seed),
        "seed_index": str(seed_index),
        "config_hash": configuration.config_hash,
        "spec_hash": spec.fingerprint(),
        "source_study": configuration.study,
        "source_trial": str(configuration.trial_number),
        "source_run_id": configuration.run_id or "",
        "state": "RUNNING",
    }
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    try:
        outcome = run_configuration(spec, splits, configuration.params, seed)
    except DivergenceError as error:
        logger.warning(
            "re-evaluation of %s with seed %d failed: %s", configuration.kind, seed, error
        )
        client.log_batch(
            run_id, tags=[RunTag("state", "FAIL"), RunTag("fail_reason", str(error)[:5000])]
        )
        client.set_terminated(run_id, status="FAILED")
        return None
    except BaseException:
        client.set_terminated(run_id, status="KILLED")
        raise
    _log_outcome(client, run_id, outcome, seed)
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def _log_outcome(client: MlflowClient, run_id: str, outcome, seed: int) -> None:
    timestamp = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), timestamp, 0)
        for key, value in outcome.metrics.items()
        if np.isfinite(value)
    ]
    history = outcome.result.history
    for key in EPOCH_METRICS:
        for epoch, value in enumerate(history.get(key, [])):
            if np.isfinite(value):
                metrics.append(Metric(key, float(value), timestamp, epoch))
    values = {**outcome.params.as_dict(), "seed": seed}
    params = [Param(key, str(value)) for key, value in sorted(values.items())]
    tags = [RunTag("state", "COMPLETE")]
    batches = max(
        1,
        -(-len(metrics) // MAX_METRICS_PER_BATCH),
        -(-len(params) // MAX_PARAMS_PER_BATCH),
    )
    for index in range(batches):
        client.log_batch(
            run_id,
            metrics=metrics[index * MAX_METRICS_PER_BATCH : (index + 1) * MAX_METRICS_PER_BATCH],
            params=params[index * MAX_PARAMS_PER_BATCH : (index + 1) * MAX_PARAMS_PER_BATCH],
            tags=tags if index == 0 else [],
        )
