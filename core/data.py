"""Datasets, leakage-safe splits, label noise and training-time augmentation.

Every dataset comes from scikit-learn's bundled loaders or its generators, so nothing is
downloaded. :func:`load_dataset` turns a dataset name into a :class:`Splits` object holding
train, validation and test arrays that are ready for the NumPy trainer:

* The test split is taken off the full data first, then the validation split from the rest;
  both are stratified by class for classification datasets (see :func:`split_arrays`).
* Optional subsampling of the training split (``train_fraction``) and label noise on the
  training labels only (``label_noise``) are applied next, both seeded by ``split_seed``.
* Feature standardisation is fitted on the training rows actually used for training and then
  applied unchanged to validation and test, so no statistic ever sees held-out rows. A column
  that is constant in training keeps scale 1 and maps to exactly 0 in training.
* For regression the target is standardised the same way (training statistics only, stored as
  ``y_mean``/``y_scale``), because a mean-squared error on raw targets such as diabetes (values
  around 150) would make any learning-rate search range meaningless. Predictions go back to
  target units with ``y * y_scale + y_mean``.

Augmentation (:func:`make_augmenter`) is a function the trainer applies to training batches
only; validation and test arrays are never augmented or noised.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import DTypeLike

logger = logging.getLogger(__name__)

__all__ = [
    "AUGMENTATIONS",
    "CLASSIFICATION",
    "DATASETS",
    "GENERATED",
    "REGRESSION",
    "SplitIndices",
    "Splits",
    "UnknownDatasetError",
    "apply_standardization",
    "class_balance",
    "fit_standardization",
    "load_dataset",
    "make_augmenter",
    "split_arrays",
    "task_of",
]

DATASETS: tuple[str, ...] = (
    "iris",
    "wine",
    "breast_cancer",
    "digits",
    "diabetes",
    "moons",
    "circles",
    "classification",
    "regression",
)
"""Every dataset name :func:`load_dataset` accepts."""

REGRESSION: frozenset[str] = frozenset({"diabetes", "regression"})
"""Datasets whose target is a real number."""

CLASSIFICATION: frozenset[str] = frozenset(DATASETS) - REGRESSION
"""Datasets whose target is a class label."""

GENERATED: frozenset[str] = frozenset({"moons", "circles", "classification", "regression"})
"""Datasets drawn from a scikit-learn generator; ``n_samples`` and ``noise`` apply to these."""

AUGMENTATIONS: tuple[str, ...] = ("none", "noise", "shift")
"""Every augmentation kind :func:`make_augmenter` accepts."""

Augmenter = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""A training-time augmentation: ``(X, rng) -> new array`` of the same shape and dtype."""

_DEFAULT_N_SAMPLES = {"moons": 1000, "circles": 1000, "classification": 2000, "regression": 1000}
_DEFAULT_NOISE = {"moons": 0.2, "circles": 0.1, "regression": 0.0}
_IMAGE_SHAPES: dict[str, tuple[int, int]] = {"digits": (8, 8)}
# Loader names in sklearn.datasets; scikit-learn is imported on first load, so that
# reading the dataset names (spec validation, the command line) stays fast.
_BUNDLED_LOADERS = {
    "iris": "load_iris",
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
    "digits": "load_digits",
    "diabetes": "load_diabetes",
}
_ALLOWED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Independent random streams derived from split_seed, so that changing one step (for example
# the amount of label noise) never changes the rows another step picks.
_SUBSAMPLE_STREAM = 1
_LABEL_NOISE_STREAM = 2


class UnknownDatasetError(ValueError):
    """Raised when a dataset name is not one of :data:`DATASETS`."""

    def __init__(self, name: object) -> None:
        super().__init__(f"dataset must be one of {', '.join(DATASETS)}; got {name!r}")
        self.name = name


class SplitIndices(NamedTuple):
    """Row indices of the three splits, into the arrays given to :func:`split_arrays`."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclass(frozen=True, eq=False)
class Splits:
    """Train, validation and test arrays of one dataset, plus what is needed to audit them.

    Attributes:
        name: Dataset name, one of :data:`DATASETS`.
        task: ``"classification"`` or ``"regression"``.
        X_train: Training features, shape ``(n_train, n_features)``, in the requested dtype.
        y_train: Training targets: int64 labels in ``0..n_classes-1`` (possibly noisy) for
            classification, a ``(n_train, 1)`` float column for regression.
        X_val: Validation features (never augmented or noised).
        y_val: Validation targets (never noised).
        X_test: Test features (never augmented or noised).
        y_test: Test targets (never noised).
        n_classes: Number of classes; 0 for regression.
        n_features: Number of feature columns.
        image_shape: ``(height, width)`` of each row seen as an image (``(8, 8)`` for digits),
            else None.
        mean: Per-column feature mean of the training rows (float64), or None when the data
            were not standardised.
        scale: Per-column feature standard deviation of the training rows, 1 for columns that
            are constant in training (float64), or None when not standardised.
        train_indices: Row indices of the training rows in the original dataset, in the order
            of ``X_train``.
        val_indices: Row indices of the validation rows in the original dataset.
        test_indices: Row indices of the test rows in the original dataset.
        noisy_train_indices: Positions in the training split whose label was flipped by label
            noise (sorted; empty when there is none).
        y_mean: Regression only: training target mean used to standardise ``y``, else None.
        y_scale: Regression only: training target standard deviation (1 if constant), else
            None.
    """

    name: str
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    n_features: int
    image_shape: tuple[int, int] | None
    mean: np.ndarray | None
    scale: np.ndarray | None
    train_indices: np.ndarray
    val_indices: np.ndarray
    test_indices: np.ndarray
    noisy_train_indices: np.ndarray
    y_mean: float | None = None
    y_scale: float | None = None


def task_of(name: str) -> str:
    """Return the learning task of a dataset.

    Args:
        name: Dataset name.

    Returns:
        ``"regression"`` for diabetes and regression, ``"classification"`` otherwise.

    Raises:
        UnknownDatasetError: If ``name`` is not one of :data:`DATASETS`.
    """
    if name not in DATASETS:
        raise UnknownDatasetError(name)
    return "regression" if name in REGRESSION else "classification"


def class_balance(y: np.ndarray) -> float:
    """Return the fraction of rows that belong to the most common class.

    Accuracy below this value is no better than always predicting the majority class.

    Args:
        y: One-dimensional array of class labels.

    Returns:
        The majority-class fraction, in ``(0, 1]``.

    Raises:
        ValueError: If ``y`` is empty.
    """
    labels = np.asarray(y).ravel()
    if labels.size == 0:
        raise ValueError("y must contain at least one label; got an empty array")
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / labels.size)


def fit_standardization(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compute per-column standardisation statistics of training rows.

    Columns whose values are all equal get the exact constant as mean and a scale of 1, so they
    map to exactly 0 instead of NaN or infinity.

    Args:
        X: Training rows, shape ``(n, n_features)`` with ``n >= 1``.

    Returns:
        ``(mean, scale)``, each a float64 array of shape ``(n_features,)``.

    Raises:
        ValueError: If ``X`` is not a non-empty two-dimensional array.
    """
    data = np.asarray(X, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"X must be a 2-D array with at least one row; got shape {data.shape}")
    mean = data.mean(axis=0)
    std = data.std(axis=0)
    constant = data.min(axis=0) == data.max(axis=0)
    mean = np.where(constant, data[0], mean)
    scale = np.where(constant | ~(std > 0), 1.0, std)
    return mean, scale


def apply_standardization(
    X: np.ndarray, mean: np.ndarray, scale: np.ndarray, dtype: DTypeLike = np.float32
) -> np.ndarray:
    """Standardise rows with statistics from :func:`fit_standardization`.

    Args:
        X: Rows to transform, shape ``(n, n_features)``.
        mean: Per-column mean of the training rows.
        scale: Per-column scale of the training rows (never 0).
        dtype: Floating dtype of the result.

    Returns:
        A new array ``(X - mean) / scale`` in ``dtype``, computed in float64.
    """
    return ((np.asarray(X, dtype=np.float64) - mean) / scale).astype(dtype)


def split_arrays(
    X: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    train_fraction: float = 1.0,
) -> SplitIndices:
    """Split rows into train, validation and test; stratified by class for classification.

    The test split (``round(test_fraction * n)`` rows) is taken off the full data first, then
    the validation split (``round(val_fraction * n)`` rows, a fraction of the *full* data)
    from the rest; the remainder is the training split. Both use scikit-learn's
    ``train_test_split`` with ``random_state=split_seed``. With ``train_fraction < 1`` the
    training split is then subsampled to ``round(train_fraction * n_train)`` rows, stratified
    and keeping at least one row of every class it contains, seeded by ``split_seed``; the
    validation and test splits do not depend on ``train_fraction``.

    Args:
        X: Feature rows; only its length is used.
        y: Targets, one per row (class labels for classification).
        task: ``"classification"`` or ``"regression"``.
        val_fraction: Fraction of all rows in the validation split, in (0, 1).
        test_fraction: Fraction of all rows in the test split, in (0, 1).
        split_seed: Non-negative integer seed for every random choice.
        train_fraction: Fraction of the training split kept, in (0, 1].

    Returns:
        Row indices of the three splits, into ``X`` and ``y``.

    Raises:
        ValueError: If an argument is out of range or a split would be too small.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression'; got {task!r}")
    _check_open_unit("val_fraction", val_fraction)
    _check_open_unit("test_fraction", test_fraction)
    if not val_fraction + test_fraction < 1:
        raise ValueError(
            "val_fraction + test_fraction must be < 1 to leave training rows; got "
            f"{val_fraction} + {test_fraction} = {val_fraction + test_fraction}"
        )
    if not 0 < train_fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1]; got {train_fraction}")
    _check_seed(split_seed)
    labels = np.asarray(y)
    n = len(labels)
    if len(X) != n:
        raise ValueError(f"X and y must have the same number of rows; got {len(X)} and {n}")

    stratified = task == "classification"
    n_classes = len(np.unique(labels)) if stratified else 1
    n_test = round(test_fraction * n)
    n_val = round(val_fraction * n)
    for field, count in (("test", n_test), ("val", n_val), ("train", n - n_test - n_val)):
        if count < n_classes:
            raise ValueError(
                f"the {field} split would have {count} of {n} rows; it needs at least "
                f"{n_classes} (one per class); change val_fraction/test_fraction"
            )

    from sklearn.model_selection import train_test_split

    rows = np.arange(n)
    rest, test = train_test_split(
        rows,
        test_size=n_test,
        random_state=split_seed,
        stratify=labels if stratified else None,
    )
    train, val = train_test_split(
        rest,
        test_size=n_val,
        random_state=split_seed,
        stratify=labels[rest] if stratified else None,
    )
    if train_fraction < 1:
        keep = _subsample(labels[train], train_fraction, split_seed, stratified)
        train = train[keep]
    return SplitIndices(train.astype(np.int64), val.astype(np.int64), test.astype(np.int64))


def load_dataset(
    name: str,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    train_fraction: float = 1.0,
    label_noise: float = 0.0,
    standardize: bool = True,
    dtype: DTypeLike = np.float32,
    n_samples: int | None = None,
    noise: float | None = None,
) -> Splits:
    """Load a dataset and return leakage-safe train, validation and test splits.

    Args:
        name: One of :data:`DATASETS`.
        val_fraction: Fraction of all rows in the validation split, in (0, 1).
        test_fraction: Fraction of all rows in the test split, in (0, 1); the two fractions
            must sum to less than 1.
        split_seed: Non-negative integer seed for the splits, subsampling, label noise and,
            for generated datasets, the data themselves.
        train_fraction: Fraction of the training split kept for training, in (0, 1];
            subsampled stratified by class with at least one row per class.
        label_noise: Fraction of training labels flipped to a different class chosen
            uniformly, in [0, 1); classification only. Validation and test labels never change.
        standardize: Whether to standardise features (and regression targets) with statistics
            of the training rows.
        dtype: ``float32`` or ``float64``; dtype of the features and regression targets.
        n_samples: Number of rows of a generated dataset (moons, circles, classification,
            regression); defaults 1000, 1000, 2000 and 1000. Not allowed for bundled datasets.
        noise: Noise of a generated dataset: Gaussian noise on the points for moons (default
            0.2) and circles (default 0.1), on the target for regression (default 0.0). Not
            allowed for other datasets.

    Returns:
        The splits and their metadata.

    Raises:
        UnknownDatasetError: If ``name`` is not one of :data:`DATASETS`.
        ValueError: If another argument is out of range or does not apply to the dataset.
    """
    task = task_of(name)
    out_dtype = np.dtype(dtype)
    if out_dtype not in _ALLOWED_DTYPES:
        raise ValueError(f"dtype must be float32 or float64; got {out_dtype}")
    if not 0 <= label_noise < 1:
        raise ValueError(f"label_noise must be in [0, 1); got {label_noise}")
    if task == "regression" and label_noise != 0:
        raise ValueError(
            f"label_noise must be 0 for the regression dataset {name!r}; got {label_noise}"
        )
    _check_seed(split_seed)

    X_all, y_all = _raw_data(name, split_seed, n_samples, noise)
    if task == "classification":
        _, y_all = np.unique(y_all, return_inverse=True)
        y_all = y_all.astype(np.int64)
        n_classes = int(y_all.max()) + 1
    else:
        n_classes = 0

    idx = split_arrays(
        X_all,
        y_all,
        task=task,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        train_fraction=train_fraction,
    )

    y_train = y_all[idx.train]
    noisy = np.empty(0, dtype=np.int64)
    if label_noise > 0:
        y_train, noisy = _flip_labels(y_train, n_classes, label_noise, split_seed)

    mean = scale = None
    if standardize:
        mean, scale = fit_standardization(X_all[idx.train])

    def features(rows: np.ndarray) -> np.ndarray:
        if mean is None or scale is None:
            return X_all[rows].astype(out_dtype)
        return apply_standardization(X_all[rows], mean, scale, out_dtype)

    y_val, y_test = y_all[idx.val], y_all[idx.test]
    y_mean = y_scale = None
    if task == "regression":
        if standardize:
            y_mean, y_scale = (float(v[0]) for v in fit_standardization(y_train[:, None]))
        y_train, y_val, y_test = (
            _regression_target(t, y_mean, y_scale, out_dtype) for t in (y_train, y_val, y_test)
        )

    splits = Splits(
        name=name,
        task=task,
        X_train=features(idx.train),
        y_train=y_train,
        X_val=features(idx.val),
        y_val=y_val,
        X_test=features(idx.test),
        y_test=y_test,
        n_classes=n_classes,
        n_features=int(X_all.shape[1]),
        image_shape=_IMAGE_SHAPES.get(name),
        mean=mean,
        scale=scale,
        train_indices=idx.train,
        val_indices=idx.val,
        test_indices=idx.test,
        noisy_train_indices=noisy,
        y_mean=y_mean,
        y_scale=y_scale,
    )
    logger.debug(
        "loaded %s (%s): %d train / %d val / %d test rows, %d features, %d noisy labels",
        name,
        task,
        len(idx.train),
        len(idx.val),
        len(idx.test),
        splits.n_features,
        len(noisy),
    )
    return splits


def make_augmenter(kind: str, strength: float, splits: Splits) -> Augmenter | None:
    """Build a training-time augmentation for a dataset.

    The returned function takes a batch of training rows (in the representation of
    ``splits.X_train``) and a NumPy random generator owned by the caller, and returns a new
    array of the same shape and dtype; it never modifies its input and never uses global random
    state. Apply it to training rows only.

    * ``"noise"``: adds Gaussian noise with standard deviation ``strength`` to every value (in
      standard deviations of each column when the data are standardised).
    * ``"shift"``: image datasets only. Moves each image independently by an integer
      ``(dy, dx)`` drawn uniformly from ``[-k, k]`` with ``k = max(1, round(strength))``
      pixels; vacated pixels get the background (raw intensity 0). The shift happens in raw
      pixel space, and columns constant in training stay at 0.

    Args:
        kind: One of :data:`AUGMENTATIONS`.
        strength: Non-negative strength; 0 disables augmentation.
        splits: The splits the augmentation will be applied to.

    Returns:
        The augmentation function, or None for ``"none"`` or a strength of 0.

    Raises:
        ValueError: If ``kind`` is unknown, ``strength`` is negative or not finite, or
            ``"shift"`` is asked for a dataset without ``image_shape``.
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}; got {kind!r}")
    if not (math.isfinite(strength) and strength >= 0):
        raise ValueError(
            f"augmentation strength must be a finite number >= 0; got {strength} for {kind!r}"
        )
    if kind == "none" or strength == 0:
        return None
    if kind == "noise":
        return functools.partial(_add_noise, strength=float(strength))
    if splits.image_shape is None:
        raise ValueError(
            f"augmentation 'shift' needs an image dataset (one with image_shape, such as digits)"
            f"; got dataset {splits.name!r}"
        )
    return functools.partial(
        _shift_images,
        image_shape=splits.image_shape,
        max_shift=max(1, round(strength)),
        mean=splits.mean,
        scale=splits.scale,
        constant=np.ptp(splits.X_train, axis=0) == 0 if splits.mean is not None else None,
    )


def _check_open_unit(field: str, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{field} must be in (0, 1); got {value}")


def _check_seed(split_seed: int) -> None:
    if isinstance(split_seed, bool) or not isinstance(split_seed, int | np.integer):
        raise ValueError(f"split_seed must be a non-negative integer; got {split_seed!r}")
    if split_seed < 0:
        raise ValueError(f"split_seed must be a non-negative integer; got {split_seed}")


@functools.cache
def _bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets as skdatasets

    X, y = getattr(skdatasets, _BUNDLED_LOADERS[name])(return_X_y=True)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def _raw_data(
    name: str, seed: int, n_samples: int | None, noise: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Return the full float64 feature matrix and raw targets of a dataset."""
    if name not in GENERATED:
        for field, value in (("n_samples", n_samples), ("noise", noise)):
            if value is not None:
                raise ValueError(
                    f"{field} applies only to generated datasets "
                    f"({', '.join(sorted(GENERATED))}); got {field}={value} for {name!r}"
                )
        return _bundled(name)

    if n_samples is None:
        n_samples = _DEFAULT_N_SAMPLES[name]
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
        raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples}")
    if noise is not None and name not in _DEFAULT_NOISE:
        raise ValueError(
            f"noise applies only to {', '.join(sorted(_DEFAULT_NOISE))}; "
            f"got noise={noise} for {name!r}"
        )
    if noise is None:
        noise = _DEFAULT_NOISE.get(name, 0.0)
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0; got {noise}")

    from sklearn import datasets as skdatasets

    n = int(n_samples)
    if name == "moons":
        X, y = skdatasets.make_moons(n_samples=n, noise=noise, random_state=seed)
    elif name == "circles":
        X, y = skdatasets.make_circles(n_samples=n, noise=noise, factor=0.5, random_state=seed)
    elif name == "classification":
        X, y = skdatasets.make_classification(
            n_samples=n, n_features=20, n_informative=10, n_classes=3, random_state=seed
        )
    else:
        X, y = skdatasets.make_regression(
            n_samples=n, n_features=20, n_informative=10, noise=noise, random_state=seed
        )
    return np.asarray(X, dtype=np.float64), np.asarray(y)


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` across classes in proportion to ``counts``, at least 1 per present class.

    Uses largest remainders, so each class is within one row of its proportional share except
    where the one-row minimum forces more.
    """
    ideal = counts * (total / counts.sum())
    alloc = np.minimum(np.maximum(np.floor(ideal).astype(np.int64), counts > 0), counts)
    remainder = ideal - alloc
    while alloc.sum() < total:
        room = np.flatnonzero(alloc < counts)
        i = room[np.argmax(remainder[room])]
        alloc[i] += 1
        remainder[i] -= 1
    while alloc.sum() > total:
        spare = np.flatnonzero(alloc > 1)
        i = spare[np.argmin(remainder[spare])]
        alloc[i] -= 1
        remainder[i] += 1
    return alloc


def _subsample(labels: np.ndarray, fraction: float, seed: int, stratified: bool) -> np.ndarray:
    """Return sorted positions of the training rows kept by ``train_fraction``."""
    rng = np.random.default_rng([seed, _SUBSAMPLE_STREAM])
    n = len(labels)
    if not stratified:
        return np.sort(rng.choice(n, size=max(1, round(fraction * n)), replace=False))
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    alloc = _allocate(counts, min(n, max(len(classes), round(fraction * n))))
    kept = [
        rng.choice(np.flatnonzero(inverse == c), size=int(k), replace=False)
        for c, k in enumerate(alloc)
    ]
    return np.sort(np.concatenate(kept))


def _flip_labels(
    labels: np.ndarray, n_classes: int, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``round(fraction * n)`` labels to a uniformly chosen different class."""
    if n_classes < 2:
        raise ValueError(f"label_noise needs at least 2 classes; got {n_classes}")
    rng = np.random.default_rng([seed, _LABEL_NOISE_STREAM])
    n_flip = round(fraction * len(labels))
    positions = np.sort(rng.choice(len(labels), size=n_flip, replace=False)).astype(np.int64)
    noisy = labels.copy()
    noisy[positions] = (labels[positions] + rng.integers(1, n_classes, size=n_flip)) % n_classes
    return noisy, positions


def _regression_target(
    y: np.ndarray, mean: float | None, scale: float | None, dtype: np.dtype
) -> np.ndarray:
    values = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    if mean is not None and scale is not None:
        values = (values - mean) / scale
    return values.astype(dtype)


def _add_noise(X: np.ndarray, rng: np.random.Generator, *, strength: float) -> np.ndarray:
    return (X + rng.normal(0.0, strength, size=X.shape)).astype(X.dtype, copy=False)


def _shift_images(
    X: np.ndarray,
    rng: np.random.Generator,
    *,
    image_shape: tuple[int, int],
    max_shift: int,
    mean: np.ndarray | None,
    scale: np.ndarray | None,
    constant: np.ndarray | None,
) -> np.ndarray:
    height, width = image_shape
    if X.ndim != 2 or X.shape[1] != height * width:
        raise ValueError(
            f"shift augmentation expects rows of {height * width} pixels "
            f"({height}x{width}); got shape {X.shape}"
        )
    raw = np.asarray(X, dtype=np.float64)
    if mean is not None and scale is not None:
        raw = raw * scale + mean
    n = len(raw)
    m = max_shift
    # Every image at once: pad with background (raw intensity 0) by the largest shift, then
    # gather each image's window. shifted[y, x] = image[y - dy, x - dx], background where
    # that falls outside the image.
    padded = np.zeros((n, height + 2 * m, width + 2 * m))
    padded[:, m : m + height, m : m + width] = raw.reshape(n, height, width)
    offsets = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    src_y = np.arange(height) - offsets[:, :1] + m  # (n, height)
    src_x = np.arange(width) - offsets[:, 1:] + m  # (n, width)
    index = (src_y[:, :, None] * (width + 2 * m) + src_x[:, None, :]).reshape(n, -1)
    shifted = np.take_along_axis(padded.reshape(n, -1), index, axis=1)
    out = shifted
    if mean is not None and scale is not None:
        out = (out - mean) / scale
        if constant is not None:
            out[:, constant] = 0.0
    return out.astype(X.dtype)
