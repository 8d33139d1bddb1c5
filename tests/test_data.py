"""Tests of core.data: loading, leakage-safe splits, label noise and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

from core.data import (
    AUGMENTATIONS,
    CLASSIFICATION,
    DATASETS,
    REGRESSION,
    Splits,
    UnknownDatasetError,
    apply_standardization,
    class_balance,
    fit_standardization,
    load_dataset,
    make_augmenter,
    split_arrays,
    task_of,
)

CLASSIFIERS = [name for name in DATASETS if name in CLASSIFICATION]
ARRAY_FIELDS = (
    "X_train",
    "y_train",
    "X_val",
    "y_val",
    "X_test",
    "y_test",
    "train_indices",
    "val_indices",
    "test_indices",
    "noisy_train_indices",
)


def _reduced_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """All 357 benign rows (label 1) plus the first 20 malignant rows (label 0)."""
    X, y = load_breast_cancer(return_X_y=True)
    rows = np.concatenate([np.flatnonzero(y == 1), np.flatnonzero(y == 0)[:20]])
    return X[rows], y[rows]


def _image_splits(
    X_train: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None
) -> Splits:
    """Minimal 8x8 image splits, for testing the shift augmentation on synthetic images."""
    empty = np.empty((0, 64))
    no_rows = np.empty(0, dtype=np.int64)
    return Splits(
        name="synthetic",
        task="classification",
        X_train=X_train,
        y_train=np.zeros(len(X_train), dtype=np.int64),
        X_val=empty,
        y_val=no_rows,
        X_test=empty,
        y_test=no_rows,
        n_classes=1,
        n_features=64,
        image_shape=(8, 8),
        mean=mean,
        scale=scale,
        train_indices=np.arange(len(X_train)),
        val_indices=no_rows,
        test_indices=no_rows,
        noisy_train_indices=no_rows,
    )


def _shift_oracle(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move every pixel by (dy, dx), pixel by pixel; pixels nothing moves into stay 0."""
    out = np.zeros_like(image)
    height, width = image.shape
    for i in range(height):
        for j in range(width):
            if 0 <= i + dy < height and 0 <= j + dx < width:
                out[i + dy, j + dx] = image[i, j]
    return out


# Loading --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_dataset_loads_with_consistent_shapes_dtypes_and_valid_targets(name, dtype):
    s = load_dataset(name, dtype=dtype)

    assert s.name == name
    assert s.task == task_of(name)
    splits = [(s.X_train, s.y_train), (s.X_val, s.y_val), (s.X_test, s.y_test)]
    for X, y in splits:
        assert X.ndim == 2 and X.shape[1] == s.n_features
        assert X.dtype == dtype
        assert len(y) == len(X) > 0
        assert np.isfinite(X).all()
    for indices, (X, _) in zip(
        (s.train_indices, s.val_indices, s.test_indices), splits, strict=True
    ):
        assert indices.shape == (len(X),)
    if s.task == "classification":
        assert s.n_classes >= 2
        for _, y in splits:
            assert y.dtype == np.int64 and y.ndim == 1
            assert y.min() >= 0 and y.max() < s.n_classes
        assert set(np.unique(s.y_train)) == set(range(s.n_classes))
        assert s.y_mean is None and s.y_scale is None
    else:
        assert s.n_classes == 0
        for _, y in splits:
            assert y.dtype == dtype and y.shape == (len(y), 1)
            assert np.isfinite(y).all()
    assert s.image_shape == ((8, 8) if name == "digits" else None)
    assert s.noisy_train_indices.size == 0


def test_task_of_and_task_sets_put_diabetes_and_regression_in_regression():
    assert {"diabetes", "regression"} == REGRESSION
    assert set(DATASETS) == CLASSIFICATION | REGRESSION
    assert not CLASSIFICATION & REGRESSION
    assert task_of("diabetes") == "regression"
    assert task_of("regression") == "regression"
    assert task_of("digits") == "classification"


def test_unknown_dataset_name_raises_error_naming_value_and_known_names():
    with pytest.raises(UnknownDatasetError, match="dataset must be one of") as info:
        load_dataset("mnist")
    message = str(info.value)
    assert "'mnist'" in message
    assert "\n" not in message
    for name in DATASETS:
        assert name in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction \\+ test_fraction"),
        ({"train_fraction": 0.0}, "train_fraction"),
        ({"train_fraction": 1.2}, "train_fraction"),
        ({"label_noise": 1.0}, "label_noise"),
        ({"label_noise": -0.1}, "label_noise"),
        ({"split_seed": -1}, "split_seed"),
        ({"dtype": np.int64}, "dtype"),
    ],
)
def test_out_of_range_arguments_raise_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        load_dataset("iris", **kwargs)


def test_n_samples_and_noise_apply_to_generated_datasets_only():
    moons = load_dataset("moons", n_samples=300, noise=0.05)
    assert len(moons.y_train) + len(moons.y_val) + len(moons.y_test) == 300
    with pytest.raises(ValueError, match="n_samples applies only to generated datasets"):
        load_dataset("iris", n_samples=100)
    with pytest.raises(ValueError, match="noise applies only to"):
        load_dataset("classification", noise=0.1)


def test_generator_noise_changes_the_data():
    quiet = load_dataset("moons", noise=0.0)
    loud = load_dataset("moons", noise=0.5)
    assert not np.array_equal(quiet.X_train, loud.X_train)


# Leakage (case B23) ----------------------------------------------------------------------------


@pytest.mark.parametrize("train_fraction", [1.0, 0.5])
def test_standardisation_statistics_come_from_training_rows_only(train_fraction):
    raw = load_breast_cancer().data.astype(np.float64)
    s = load_dataset("breast_cancer", split_seed=7, train_fraction=train_fraction)

    raw_train = raw[s.train_indices]
    np.testing.assert_allclose(s.mean, raw_train.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.scale, raw_train.std(axis=0), rtol=1e-12)
    assert not np.allclose(s.mean, raw.mean(axis=0))
    # Validation and test are transformed with the training statistics.
    for X, rows in ((s.X_val, s.val_indices), (s.X_test, s.test_indices)):
        expected = ((raw[rows] - s.mean) / s.scale).astype(np.float32)
        np.testing.assert_array_equal(X, expected)


@pytest.mark.parametrize(
    ("name", "kind", "strength"), [("breast_cancer", "noise", 0.5), ("digits", "shift", 2.0)]
)
def test_augmentation_never_touches_validation_or_test_data_or_its_input(name, kind, strength):
    plain = load_dataset(name, split_seed=7)
    s = load_dataset(name, split_seed=7)
    train_before = s.X_train.copy()
    augment = make_augmenter(kind, strength, s)
    assert augment is not None

    rng = np.random.default_rng(0)
    for _ in range(3):
        out = augment(s.X_train, rng)
        assert out.shape == s.X_train.shape and out.dtype == s.X_train.dtype
        assert not np.array_equal(out, s.X_train)

    assert s.X_train.tobytes() == train_before.tobytes()
    for field in ("X_val", "y_val", "X_test", "y_test"):
        assert getattr(s, field).shape == getattr(plain, field).shape
        assert getattr(s, field).tobytes() == getattr(plain, field).tobytes()


# Splits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["iris", "digits", "diabetes", "moons"])
def test_split_indices_are_disjoint_and_cover_the_dataset(name):
    s = load_dataset(name, split_seed=3)
    parts = (s.train_indices, s.val_indices, s.test_indices)
    everything = np.concatenate(parts)
    n = len(everything)
    assert len(np.unique(everything)) == n
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))
    assert len(s.test_indices) == round(0.2 * n)
    assert len(s.val_indices) == round(0.2 * n)


def test_training_rows_match_original_rows_named_by_train_indices():
    raw_X, raw_y = load_digits(return_X_y=True)
    s = load_dataset("digits", split_seed=5, standardize=False, dtype=np.float64)
    assert s.mean is None and s.scale is None
    np.testing.assert_array_equal(s.X_train, raw_X[s.train_indices])
    np.testing.assert_array_equal(s.y_train, raw_y[s.train_indices])
    np.testing.assert_array_equal(s.X_test, raw_X[s.test_indices])
    np.testing.assert_array_equal(s.y_val, raw_y[s.val_indices])


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_stratified_splits_keep_class_proportions_within_one_row(name):
    s = load_dataset(name, split_seed=11)
    y_all = np.concatenate([s.y_train, s.y_val, s.y_test])
    share = np.bincount(y_all, minlength=s.n_classes) / len(y_all)
    for y in (s.y_train, s.y_val, s.y_test):
        counts = np.bincount(y, minlength=s.n_classes)
        assert np.abs(counts - len(y) * share).max() <= 1


@pytest.mark.parametrize("seed", range(5))
def test_stratified_validation_split_of_imbalanced_subset_keeps_minority_share(seed):
    # Case B27 (3): 357 benign rows and only 20 malignant rows.
    X, y = _reduced_breast_cancer()
    idx = split_arrays(
        X, y, task="classification", val_fraction=0.2, test_fraction=0.2, split_seed=seed
    )
    n_val = len(idx.val)
    malignant = int(np.sum(y[idx.val] == 0))
    assert abs(malignant - round(n_val * 20 / 377)) <= 1
    assert int(np.sum(y[idx.test] == 0)) >= 1
    assert len(np.unique(np.concatenate(idx))) == len(y)


def test_class_balance_of_imbalanced_subset_is_majority_fraction():
    _, y = _reduced_breast_cancer()
    assert class_balance(y) == pytest.approx(357 / 377)
    assert class_balance(np.array([0, 1, 2, 2])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least one label"):
        class_balance(np.array([], dtype=np.int64))


def test_split_arrays_rejects_splits_too_small_for_every_class():
    y = np.repeat([0, 1, 2], 4)
    with pytest.raises(ValueError, match="needs at least 3"):
        split_arrays(
            np.zeros((12, 1)),
            y,
            task="classification",
            val_fraction=0.1,
            test_fraction=0.3,
            split_seed=0,
        )


# Standardisation ----------------------------------------------------------------------------


def test_column_constant_in_training_standardises_to_zero_not_nan():
    # 0.7 repeated 7 times has a floating-point std of about 1e-16, not exactly 0.
    train = np.column_stack([np.full(7, 0.7), np.arange(7.0)])
    mean, scale = fit_standardization(train)
    assert scale[0] == 1.0
    assert mean[0] == 0.7
    out = apply_standardization(train, mean, scale, np.float64)
    assert np.all(out[:, 0] == 0.0)
    assert out[:, 1].mean() == pytest.approx(0.0) and out[:, 1].std() == pytest.approx(1.0)
    held_out = apply_standardization(np.array([[1.7, 3.0]]), mean, scale, np.float32)
    assert held_out.dtype == np.float32
    assert np.isfinite(held_out).all()
    assert held_out[0, 0] == pytest.approx(1.0)


def test_digits_pixels_constant_in_training_are_zero_and_finite_everywhere():
    raw = load_digits().data
    s = load_dataset("digits", split_seed=2)
    constant = np.ptp(raw[s.train_indices], axis=0) == 0
    assert constant.any()
    assert np.all(s.X_train[:, constant] == 0)
    assert np.all(s.scale[constant] == 1)
    for X in (s.X_train, s.X_val, s.X_test):
        assert np.isfinite(X).all()


def test_regression_target_is_standardised_with_training_statistics():
    raw_y = load_diabetes().target
    s = load_dataset("diabetes", split_seed=4)
    train_y = raw_y[s.train_indices]
    assert s.y_mean == pytest.approx(train_y.mean(), rel=1e-12)
    assert s.y_scale == pytest.approx(train_y.std(), rel=1e-12)
    np.testing.assert_allclose(s.y_train[:, 0] * s.y_scale + s.y_mean, train_y, rtol=1e-5)
    np.testing.assert_allclose(
        s.y_val[:, 0] * s.y_scale + s.y_mean, raw_y[s.val_indices], rtol=1e-5
    )
    assert abs(float(s.y_train.mean())) < 1e-5
    plain = load_dataset("diabetes", split_seed=4, standardize=False)
    assert plain.y_mean is None and plain.y_scale is None
    np.testing.assert_allclose(plain.y_test[:, 0], raw_y[plain.test_indices], rtol=1e-6)


# Label noise ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fraction"), [("digits", 0.25), ("breast_cancer", 0.1)])
def test_label_noise_flips_exact_count_of_training_labels_only(name, fraction):
    clean = load_dataset(name, split_seed=3)
    noisy = load_dataset(name, split_seed=3, label_noise=fraction)

    np.testing.assert_array_equal(noisy.train_indices, clean.train_indices)
    np.testing.assert_array_equal(noisy.X_train, clean.X_train)
    changed = np.flatnonzero(noisy.y_train != clean.y_train)
    assert len(changed) == round(fraction * len(clean.y_train))
    np.testing.assert_array_equal(changed, noisy.noisy_train_indices)
    for field in ("X_val", "y_val", "X_test", "y_test"):
        assert getattr(noisy, field).tobytes() == getattr(clean, field).tobytes()
    assert noisy.y_train.min() >= 0 and noisy.y_train.max() < noisy.n_classes


def test_label_noise_picks_each_other_class():
    clean = load_dataset("digits", split_seed=1)
    noisy = load_dataset("digits", split_seed=1, label_noise=0.9)
    at = noisy.noisy_train_indices
    offsets = (noisy.y_train[at] - clean.y_train[at]) % clean.n_classes
    assert set(offsets.tolist()) == set(range(1, clean.n_classes))


def test_label_noise_is_rejected_for_regression():
    with pytest.raises(ValueError, match="label_noise must be 0 for the regression dataset"):
        load_dataset("diabetes", label_noise=0.1)


# Training subsample ------------------------------------------------------------------------------


@pytest.mark.parametrize(("fraction", "expected"), [(0.5, 45), (0.1, 9), (0.01, 3)])
def test_train_fraction_subsamples_expected_size_with_all_classes(fraction, expected):
    full = load_dataset("iris", split_seed=6)
    small = load_dataset("iris", split_seed=6, train_fraction=fraction)
    assert len(full.y_train) == 90
    assert len(small.y_train) == len(small.X_train) == expected
    assert set(np.unique(small.y_train)) == {0, 1, 2}
    assert set(small.train_indices) <= set(full.train_indices)
    for field in ("val_indices", "test_indices", "y_val", "y_test"):
        np.testing.assert_array_equal(getattr(small, field), getattr(full, field))


def test_train_fraction_keeps_a_row_of_a_rare_class():
    # About 12 malignant rows among about 227 training rows: 2% of them is 5 rows, whose
    # proportional share of malignant rows (0.26) would round to none.
    X, y = _reduced_breast_cancer()
    full = split_arrays(X, y, task="classification", split_seed=0)
    small = split_arrays(X, y, task="classification", split_seed=0, train_fraction=0.02)
    assert len(small.train) == round(0.02 * len(full.train))
    assert set(y[small.train]) == {0, 1}
    np.testing.assert_array_equal(small.val, full.val)
    np.testing.assert_array_equal(small.test, full.test)


def test_train_fraction_subsample_is_stratified():
    full = load_dataset("digits", split_seed=0)
    small = load_dataset("digits", split_seed=0, train_fraction=0.3)
    n_small = len(small.y_train)
    assert n_small == round(0.3 * len(full.y_train))
    expected = np.bincount(full.y_train) * n_small / len(full.y_train)
    assert np.abs(np.bincount(small.y_train) - expected).max() <= 1


# Augmentation --------------------------------------------------------------------------------


def test_no_augmentation_or_zero_strength_returns_none():
    s = load_dataset("iris")
    assert AUGMENTATIONS == ("none", "noise", "shift")
    assert make_augmenter("none", 1.0, s) is None
    assert make_augmenter("noise", 0.0, s) is None
    with pytest.raises(ValueError, match="augmentation must be one of none, noise, shift"):
        make_augmenter("mixup", 1.0, s)
    with pytest.raises(ValueError, match="strength must be a finite number >= 0"):
        make_augmenter("noise", -1.0, s)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_noise_augmenter_adds_gaussian_noise_of_given_strength(dtype):
    s = load_dataset("breast_cancer", dtype=dtype)
    augment = make_augmenter("noise", 0.3, s)
    before = s.X_train.copy()
    out = augment(s.X_train, np.random.default_rng(1))
    assert out.dtype == dtype and out.shape == before.shape
    np.testing.assert_array_equal(s.X_train, before)
    assert np.std(out - before) == pytest.approx(0.3, rel=0.05)
    again = augment(s.X_train, np.random.default_rng(1))
    np.testing.assert_array_equal(out, again)


@pytest.mark.parametrize("standardized", [True, False])
@pytest.mark.parametrize(("strength", "k"), [(0.4, 1), (2.6, 3)])
def test_pixel_shift_moves_image_by_sampled_offset_and_fills_background(strength, k, standardized):
    raw = np.full((8, 8), 5.0)
    raw[3, 4] = 16.0  # one bright pixel; everything else a dim non-background intensity
    rng = np.random.default_rng(0)
    mean = rng.uniform(1.0, 3.0, size=64) if standardized else np.zeros(64)
    scale = rng.uniform(0.5, 2.0, size=64) if standardized else np.ones(64)
    splits = _image_splits(
        rng.normal(size=(50, 64)), mean if standardized else None, scale if standardized else None
    )
    batch = np.tile((raw.ravel() - mean) / scale, (300, 1))
    before = batch.copy()

    augment = make_augmenter("shift", strength, splits)
    out = augment(batch, np.random.default_rng(42))

    np.testing.assert_array_equal(batch, before)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    seen = set()
    for row in out:
        image = (row * scale + mean).reshape(8, 8)
        r, c = np.unravel_index(np.argmax(image), image.shape)
        dy, dx = int(r) - 3, int(c) - 4
        assert abs(dy) <= k and abs(dx) <= k
        np.testing.assert_allclose(image, _shift_oracle(raw, dy, dx), atol=1e-9)
        seen.add((dy, dx))
    # Each image draws its own shift, covering the whole [-k, k] square.
    assert seen == {(dy, dx) for dy in range(-k, k + 1) for dx in range(-k, k + 1)}


def test_pixel_shift_is_deterministic_given_the_rng():
    s = load_dataset("digits", split_seed=0)
    augment = make_augmenter("shift", 1.0, s)
    first = augment(s.X_train, np.random.default_rng(5))
    second = augment(s.X_train, np.random.default_rng(5))
    third = augment(s.X_train, np.random.default_rng(6))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, third)


def test_pixel_shift_on_digits_keeps_training_constant_pixels_at_zero():
    s = load_dataset("digits", split_seed=0)
    constant = np.ptp(s.X_train, axis=0) == 0
    out = make_augmenter("shift", 2.0, s)(s.X_train, np.random.default_rng(0))
    assert np.isfinite(out).all()
    assert np.all(out[:, constant] == 0)


def test_pixel_shift_on_non_image_dataset_raises_naming_the_field():
    s = load_dataset("breast_cancer")
    with pytest.raises(ValueError, match="augmentation 'shift' needs an image dataset"):
        make_augmenter("shift", 1.0, s)


# Seeds -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["breast_cancer", "moons", "regression"])
def test_same_split_seed_gives_identical_arrays(name):
    kwargs = {"split_seed": 9, "train_fraction": 0.8}
    if name in CLASSIFICATION:
        kwargs["label_noise"] = 0.1
    first = load_dataset(name, **kwargs)
    second = load_dataset(name, **kwargs)
    for field in ARRAY_FIELDS:
        assert getattr(first, field).tobytes() == getattr(second, field).tobytes()


@pytest.mark.parametrize("name", ["breast_cancer", "moons"])
def test_different_split_seed_gives_different_split(name):
    first = load_dataset(name, split_seed=0)
    second = load_dataset(name, split_seed=1)
    for field in ("train_indices", "val_indices", "test_indices"):
        assert not np.array_equal(np.sort(getattr(first, field)), np.sort(getattr(second, field)))
    assert not np.array_equal(first.X_train, second.X_train)
