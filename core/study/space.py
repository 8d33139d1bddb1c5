"""The search space, in one place: what a trial samples, conditional on regularizer kind.

Every conditional parameter has a name of its own (``l1_strength``, ``l2_strength``, ...),
so no name ever carries two different distributions in one study (Optuna refuses that).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna

from core.study.spec import Spec

STRENGTH_PARAM = {
    "l1": "l1_strength",
    "l2": "l2_strength",
    "elastic_net": "elastic_net_strength",
    "weight_decay": "weight_decay_strength",
}


@dataclass(frozen=True)
class TrialParams:
    """One configuration to train: everything a trial sampled plus the fixed choices."""

    learning_rate: float
    regularizer: str = "none"
    strength: float = 0.0
    l1_ratio: float = 0.5
    dropout_rate: float = 0.0
    patience: int | None = None
    augmentation: str = "none"
    augmentation_strength: float = 0.0
    optimizer: str = "adam"
    batch_size: int = 64

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _float(trial: optuna.Trial, name: str, bounds: tuple[float, float], *, log: bool) -> float:
    low, high = bounds
    if low == high:
        return float(low)
    return trial.suggest_float(name, low, high, log=log)


def _int(trial: optuna.Trial, name: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if low == high:
        return int(low)
    return trial.suggest_int(name, low, high)


def _categorical(trial: optuna.Trial, name: str, choices: tuple) -> Any:
    if len(choices) == 1:
        return choices[0]
    return trial.suggest_categorical(name, list(choices))


def _penalty(trial: optuna.Trial, spec: Spec, kind: str) -> tuple[float, float]:
    """Strength (and l1 ratio) for a penalty kind, each under its own parameter name."""
    search = spec.search
    if kind not in STRENGTH_PARAM:
        return 0.0, 0.5
    strength = _float(trial, STRENGTH_PARAM[kind], getattr(search, STRENGTH_PARAM[kind]), log=True)
    l1_ratio = 0.5
    if kind == "elastic_net":
        l1_ratio = _float(trial, "elastic_net_l1_ratio", search.elastic_net_l1_ratio, log=False)
    return strength, l1_ratio


def _augmentation(trial: optuna.Trial, spec: Spec, choices: tuple[str, ...]) -> tuple[str, float]:
    kind = _categorical(trial, "augmentation", choices)
    if kind == "noise":
        return kind, _float(trial, "noise_strength", spec.search.noise_strength, log=True)
    if kind == "shift":
        return kind, float(_int(trial, "shift_strength", spec.search.shift_strength))
    return "none", 0.0


def _common(trial: optuna.Trial, spec: Spec) -> dict[str, Any]:
    search = spec.search
    values: dict[str, Any] = {
        "learning_rate": _float(trial, "learning_rate", search.learning_rate, log=True),
        "optimizer": spec.train.optimizer,
        "batch_size": spec.train.batch_size,
    }
    if search.optimizers is not None:
        values["optimizer"] = _categorical(trial, "optimizer", search.optimizers)
    if search.batch_sizes is not None:
        values["batch_size"] = _categorical(trial, "batch_size", tuple(search.batch_sizes))
    return values


def suggest_joint(trial: optuna.Trial, spec: Spec) -> TrialParams:
    """Joint mode: the kind is a searched categorical; dropout (unless it is a kind of its
    own), patience and augmentation are searched alongside."""
    search = spec.search
    values = _common(trial, spec)
    kind = _categorical(trial, "regularizer", search.regularizers)
    strength, l1_ratio = _penalty(trial, spec, kind)
    if kind == "dropout" or "dropout" not in search.regularizers:
        dropout_rate = _float(trial, "dropout_rate", search.dropout_rate, log=False)
    else:
        dropout_rate = 0.0
    patience = _int(trial, "patience", search.patience)
    augmentation, augmentation_strength = _augmentation(trial, spec, search.augmentations)
    return TrialParams(
        regularizer=kind,
        strength=strength,
        l1_ratio=l1_ratio,
        dropout_rate=dropout_rate,
        patience=patience,
        augmentation=augmentation,
        augmentation_strength=augmentation_strength,
        **values,
    )


def suggest_arm(trial: optuna.Trial, spec: Spec, arm: str) -> TrialParams:
    """Per-kind mode: only the arm's technique is on, searched with the learning rate.

    The ``none`` arm has no penalty, dropout, augmentation or early stopping: it keeps
    the final epoch's weights.
    """
    search = spec.search
    values = _common(trial, spec)
    if arm in STRENGTH_PARAM:
        strength, l1_ratio = _penalty(trial, spec, arm)
        return TrialParams(regularizer=arm, strength=strength, l1_ratio=l1_ratio, **values)
    if arm == "dropout":
        rate = _float(trial, "dropout_rate", search.dropout_rate, log=False)
        return TrialParams(regularizer="dropout", dropout_rate=rate, **values)
    if arm == "early_stopping":
        patience = _int(trial, "patience", search.patience)
        return TrialParams(regularizer="early_stopping", patience=patience, **values)
    if arm == "augmentation":
        choices = tuple(a for a in search.augmentations if a != "none") or ("noise",)
        kind, strength = _augmentation(trial, spec, choices)
        return TrialParams(
            regularizer="augmentation",
            augmentation=kind,
            augmentation_strength=strength,
            **values,
        )
    return TrialParams(regularizer="none", **values)


def suggest(trial: optuna.Trial, spec: Spec, arm: str | None = None) -> TrialParams:
    """Sample one configuration: joint mode when ``arm`` is None, else the arm's space."""
    if arm is None:
        return suggest_joint(trial, spec)
    return suggest_arm(trial, spec, arm)


def grid_space(spec: Spec, arm: str | None = None) -> dict[str, list[Any]]:
    """Values per parameter for Optuna's GridSampler: ``grid_points`` per continuous range
    (log-spaced where the range is searched on a log scale).

    Known limitation: GridSampler enumerates the full product, conditional parameters
    included, so a kind that ignores a parameter still walks its grid values. A grid over
    a conditional space is therefore best used in ``per_kind`` mode.
    """
    search, points = spec.search, spec.study.grid_points

    def logs(bounds: tuple[float, float]) -> list[float]:
        return [float(v) for v in np.geomspace(bounds[0], bounds[1], points)]

    def lins(bounds: tuple[float, float]) -> list[float]:
        return [float(v) for v in np.linspace(bounds[0], bounds[1], points)]

    def ints(bounds: tuple[int, int]) -> list[int]:
        return sorted({int(round(v)) for v in np.linspace(bounds[0], bounds[1], points)})

    space: dict[str, list[Any]] = {"learning_rate": logs(search.learning_rate)}
    kinds = search.regularizers if arm is None else (arm,)
    if arm is None and len(kinds) > 1:
        space["regularizer"] = list(kinds)
    for kind in kinds:
        if kind in STRENGTH_PARAM:
            space[STRENGTH_PARAM[kind]] = logs(getattr(search, STRENGTH_PARAM[kind]))
        if (
            kind == "elastic_net"
            and search.elastic_net_l1_ratio[0] < search.elastic_net_l1_ratio[1]
        ):
            space["elastic_net_l1_ratio"] = lins(search.elastic_net_l1_ratio)
    wants_dropout = arm == "dropout" or (
        arm is None and ("dropout" in kinds or "dropout" not in search.regularizers)
    )
    if wants_dropout and search.dropout_rate[0] < search.dropout_rate[1]:
        space["dropout_rate"] = lins(search.dropout_rate)
    if arm in (None, "early_stopping") and search.patience[0] < search.patience[1]:
        space["patience"] = ints(search.patience)
    augmentations = search.augmentations if arm is None else None
    if arm == "augmentation":
        augmentations = tuple(a for a in search.augmentations if a != "none") or ("noise",)
    if augmentations:
        if len(augmentations) > 1:
            space["augmentation"] = list(augmentations)
        if "noise" in augmentations:
            space["noise_strength"] = logs(search.noise_strength)
        if "shift" in augmentations and search.shift_strength[0] < search.shift_strength[1]:
            space["shift_strength"] = ints(search.shift_strength)
    if search.optimizers is not None and len(search.optimizers) > 1:
        space["optimizer"] = list(search.optimizers)
    if search.batch_sizes is not None and len(search.batch_sizes) > 1:
        space["batch_size"] = list(search.batch_sizes)
    return space
