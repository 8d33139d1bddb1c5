"""Study specs: ``studies/*.toml`` parsed with ``tomllib`` and validated into frozen models.

Every problem becomes one ``SpecError`` line that names the field, the value received and
what is allowed, before anything touches the Optuna storage or MLflow.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from core.data import AUGMENTATIONS, DATASETS, GENERATED, task_of

# "dropout" may be listed as a kind of its own; otherwise dropout is searched alongside.
REGULARIZERS = ("none", "l1", "l2", "elastic_net", "weight_decay", "dropout")
ARMS = (
    "none",
    "l1",
    "l2",
    "elastic_net",
    "weight_decay",
    "dropout",
    "early_stopping",
    "augmentation",
)
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
METRICS = ("val_loss", "val_accuracy")


# [study] keys that may change between runs of one study: budget and liveness settings.
NOT_IDENTITY = ("n_trials", "timeout", "heartbeat_interval", "grace_period")


class SpecError(ValueError):
    """A spec that cannot be used; the message is one line naming field, value and rule."""


def _as_tuple(value: Any) -> Any:
    """TOML arrays arrive as lists; the frozen models hold tuples."""
    return tuple(value) if isinstance(value, list) else value


def _range(positive: bool) -> AfterValidator:
    def check(value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("must be [low, high] with finite bounds")
        # A linear range with low == high pins the value: it is used, not searched.
        if not (low < high or (low == high and not positive)):
            raise ValueError("must be [low, high] with low < high")
        if positive and low <= 0:
            raise ValueError("is searched on a log scale, so low must be > 0")
        return (low, high)

    return AfterValidator(check)


def _fraction(value: float) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError("must be inside (0, 1)")
    return value


def _unique(value: list[str]) -> tuple[str, ...]:
    if not value:
        raise ValueError("must name at least one choice")
    if len(set(value)) != len(value):
        raise ValueError("must not repeat a choice")
    return tuple(value)


def _name(value: str) -> str:
    # The name becomes a folder under reports/ and an MLflow experiment name.
    if not value or value.startswith(".") or not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError(
            "must be non-empty, not start with '.', and use only letters, digits, '-', '_' and '.'"
        )
    return value


def _non_negative(value: int) -> int:
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _positive(value: int) -> int:
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _choices(field: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{field} {unknown[0]!r} is unknown; allowed: {', '.join(allowed)}")


LogRange = Annotated[tuple[float, float], BeforeValidator(_as_tuple), _range(positive=True)]
LinearRange = Annotated[tuple[float, float], BeforeValidator(_as_tuple), _range(positive=False)]
IntRange = Annotated[tuple[int, int], BeforeValidator(_as_tuple), _range(positive=False)]
Choices = Annotated[tuple[str, ...], BeforeValidator(_as_tuple), AfterValidator(_unique)]
Fraction = Annotated[float, AfterValidator(_fraction)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StudySection(_Section):
    name: Annotated[str, AfterValidator(lambda s: _name(s))]
    metric: Literal["val_loss", "val_accuracy"] = "val_loss"
    direction: Literal["minimize", "maximize"] | None = None
    n_trials: Annotated[int, AfterValidator(lambda n: _positive(n))] = 20
    timeout: float | None = None
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    seed: Annotated[int, AfterValidator(lambda n: _non_negative(n))] = 0
    pruner: Literal["none", "median", "hyperband"] = "median"
    mode: Literal["joint", "per_kind"] = "joint"
    grid_points: Annotated[int, AfterValidator(lambda n: _positive(n))] = 3
    heartbeat_interval: Annotated[int, AfterValidator(lambda n: _positive(n))] = 10
    grace_period: Annotated[int, AfterValidator(lambda n: _positive(n))] = 30

    @model_validator(mode="after")
    def _direction_fits_metric(self) -> StudySection:
        expected = "minimize" if self.metric == "val_loss" else "maximize"
        if self.direction is not None and self.direction != expected:
            raise ValueError(
                f"direction {self.direction!r} contradicts metric {self.metric!r}, "
                f"which must be {expected}d"
            )
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(
                f"timeout must be a finite number of seconds > 0, but got {self.timeout!r}"
            )
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"grace_period ({self.grace_period}) must exceed heartbeat_interval "
                f"({self.heartbeat_interval})"
            )
        return self

    @property
    def optuna_direction(self) -> str:
        return "minimize" if self.metric == "val_loss" else "maximize"


class DataSection(_Section):
    dataset: str
    val_fraction: Fraction = 0.2
    test_fraction: Fraction = 0.2
    split_seed: Annotated[int, AfterValidator(lambda n: _non_negative(n))] = 0
    train_fraction: float = 1.0
    label_noise: float = 0.0
    standardize: bool = True
    n_samples: int | None = None

    @model_validator(mode="after")
    def _check(self) -> DataSection:
        if self.dataset not in DATASETS:
            raise ValueError(
                f"dataset {self.dataset!r} is unknown; allowed: {', '.join(DATASETS)}"
            )
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "val_fraction + test_fraction must leave at least 10% for training, but got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], but got {self.train_fraction}")
        if not 0.0 <= self.label_noise < 1.0:
            raise ValueError(f"label_noise must be in [0, 1), but got {self.label_noise}")
        if self.label_noise and task_of(self.dataset) == "regression":
            raise ValueError(f"label_noise needs a classification dataset, not {self.dataset!r}")
        if self.n_samples is not None and self.dataset not in GENERATED:
            raise ValueError(
                f"n_samples = {self.n_samples} applies only to the generated datasets "
                f"({', '.join(sorted(GENERATED))}), not to {self.dataset!r}"
            )
        if self.n_samples is not None and self.n_samples < 20:
            raise ValueError(f"n_samples must be >= 20, but got {self.n_samples}")
        return self

    @property
    def task(self) -> str:
        return task_of(self.dataset)


MAX_WIDTH = 65_536
MAX_DEPTH = 64
MAX_HIDDEN_WEIGHTS = 2**28  # 1 GiB of float32 between the hidden layers, all together


def _widths(value: tuple[int, ...]) -> tuple[int, ...]:
    if any(not 1 <= width <= MAX_WIDTH for width in value):
        raise ValueError(f"every layer width must be an integer in 1..{MAX_WIDTH}")
    if len(value) > MAX_DEPTH:
        raise ValueError(f"at most {MAX_DEPTH} hidden layers")
    if sum(a * b for a, b in zip(value, value[1:], strict=False)) > MAX_HIDDEN_WEIGHTS:
        raise ValueError(
            f"the hidden layers may hold at most {MAX_HIDDEN_WEIGHTS:,} weights between "
            "them in all (1 GiB of float32, before the optimizer's copies)"
        )
    return value


class ModelSection(_Section):
    hidden: Annotated[tuple[int, ...], BeforeValidator(_as_tuple), AfterValidator(_widths)] = (64,)
    activation: Literal["relu", "tanh"] = "relu"
    dtype: Literal["float32", "float64"] = "float32"


class TrainSection(_Section):
    max_epochs: Annotated[int, AfterValidator(lambda n: _positive(n))] = 30
    batch_size: Annotated[int, AfterValidator(lambda n: _positive(n))] = 64
    optimizer: Literal["sgd", "momentum", "adam"] = "adam"
    min_delta: float = 0.0

    @model_validator(mode="after")
    def _check(self) -> TrainSection:
        if not (math.isfinite(self.min_delta) and self.min_delta >= 0):
            raise ValueError(f"min_delta must be a finite number >= 0, but got {self.min_delta}")
        return self


class SearchSection(_Section):
    learning_rate: LogRange = (1e-4, 1e-1)
    regularizers: Choices = ("none", "l1", "l2", "elastic_net", "weight_decay")
    l1_strength: LogRange = (1e-6, 1e-2)
    l2_strength: LogRange = (1e-6, 1e-1)
    elastic_net_strength: LogRange = (1e-6, 1e-2)
    elastic_net_l1_ratio: LinearRange = (0.1, 0.9)
    weight_decay_strength: LogRange = (1e-5, 1e-1)
    dropout_rate: LinearRange = (0.0, 0.5)
    patience: IntRange = (3, 15)
    augmentations: Choices = ("none",)
    noise_strength: LogRange = (0.01, 0.5)
    shift_strength: IntRange = (1, 2)
    arms: Choices | None = None
    optimizers: Choices | None = None
    batch_sizes: Annotated[tuple[int, ...], BeforeValidator(_as_tuple)] | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchSection:
        _choices("regularizers", self.regularizers, REGULARIZERS)
        _choices("augmentations", self.augmentations, AUGMENTATIONS)
        if self.arms is not None:
            _choices("arms", self.arms, ARMS)
        if self.optimizers is not None:
            _choices("optimizers", self.optimizers, ("sgd", "momentum", "adam"))
        if self.batch_sizes is not None and (not self.batch_sizes or min(self.batch_sizes) < 1):
            raise ValueError(f"batch_sizes must be integers >= 1, but got {self.batch_sizes}")
        if not (self.dropout_rate[0] >= 0.0 and self.dropout_rate[1] < 1.0):
            raise ValueError(f"dropout_rate must lie within [0, 1), but got {self.dropout_rate}")
        if self.patience[0] < 1:
            raise ValueError(f"patience must be >= 1 epoch, but got {self.patience}")
        if not (self.elastic_net_l1_ratio[0] >= 0.0 and self.elastic_net_l1_ratio[1] <= 1.0):
            raise ValueError(
                f"elastic_net_l1_ratio must lie within [0, 1], but got {self.elastic_net_l1_ratio}"
            )
        if self.shift_strength[0] < 1:
            raise ValueError(f"shift_strength must be >= 1 pixel, but got {self.shift_strength}")
        return self


class ReportSection(_Section):
    seeds: Annotated[int, AfterValidator(lambda n: _positive(n))] = 5
    confidence: Fraction = 0.95


class Spec(_Section):
    study: StudySection
    data: DataSection
    model: ModelSection = Field(default_factory=ModelSection)
    train: TrainSection = Field(default_factory=TrainSection)
    search: SearchSection = Field(default_factory=SearchSection)
    report: ReportSection = Field(default_factory=ReportSection)

    @model_validator(mode="after")
    def _check(self) -> Spec:
        if "shift" in self.search.augmentations and self.data.dataset != "digits":
            raise ValueError(
                "search.augmentations 'shift' needs an image dataset (digits), "
                f"but data.dataset is {self.data.dataset!r}"
            )
        arms = self.search.arms
        if arms is not None and self.study.mode != "per_kind":
            raise ValueError(
                f"search.arms applies only to study.mode = 'per_kind', not {self.study.mode!r}"
            )
        return self

    @property
    def task(self) -> str:
        return self.data.task

    def resolved(self) -> dict[str, Any]:
        """Every value, defaults filled in, as plain TOML-ready data."""
        return self.model_dump(mode="json", exclude_none=True)

    def identity(self) -> dict[str, Any]:
        """The values that shape trials: everything but the budget, liveness settings and
        the report. A study may only be resumed with the same identity."""
        data = self.resolved()
        for key in NOT_IDENTITY:
            data["study"].pop(key, None)
        data.pop("report", None)
        return data

    def fingerprint(self) -> str:
        """A short hash of ``identity()``."""
        text = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _format_error(source: str, error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key {field!r}; remove it or check its spelling"
    if first["type"] == "missing":
        return f"{source}: {field} is required"
    value = first.get("input")
    where = f"{field} = {value!r}" if field and not isinstance(value, dict) else field
    prefix = f"{where}: " if where else ""
    return f"{source}: {prefix}{message}"


def parse_spec(data: dict[str, Any], *, source: str = "spec") -> Spec:
    """Validate already-parsed TOML data into a ``Spec``."""
    try:
        return Spec.model_validate(data)
    except ValidationError as error:
        raise SpecError(_format_error(source, error)) from None


def load_spec(path: str | Path) -> Spec:
    """Read and validate ``path``; any problem raises a one-line ``SpecError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(f"spec file {str(path)!r} cannot be read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise SpecError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
            f"{error.start}); save the spec as UTF-8 TOML"
        ) from None
    try:
        # Some editors on Windows save UTF-8 with a byte-order mark; TOML has no place for it.
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: not valid TOML: {error}") from None
    return parse_spec(data, source=str(path))


def to_toml(data: dict[str, Any]) -> str:
    """Write the resolved spec back as TOML (tables of scalars and flat lists only)."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
