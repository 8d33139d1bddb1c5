"""The fit loop: determinism, early stopping, divergence, evaluation-mode metrics,
augmentation, penalty history, dtypes, dropout at prediction time, and a digits benchmark."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from scipy.special import softmax as scipy_softmax
from sklearn.datasets import load_diabetes, load_digits, load_iris
from sklearn.metrics import log_loss, mean_squared_error
from sklearn.metrics import r2_score as sklearn_r2_score
from sklearn.model_selection import train_test_split

from core.nn import (
    MLP,
    DivergenceError,
    Penalty,
    SoftmaxCrossEntropy,
    TrainConfig,
    accuracy,
    evaluate,
    train,
)

CLASSES = list(range(10))


def standardize(X_train: np.ndarray, *others: np.ndarray):
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1.0  # constant pixels stay 0 after centring
    return [(X - mean) / std for X in (X_train, *others)]


@pytest.fixture(scope="module")
def digits():
    """Stratified 75/25 split of load_digits, standardized with training statistics."""
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    X_tr, X_te = standardize(X_tr, X_te)
    return X_tr, y_tr, X_te, y_te


@pytest.fixture(scope="module")
def digits_small(digits):
    X_tr, y_tr, X_te, y_te = digits
    return X_tr[:200], y_tr[:200], X_te[:300], y_te[:300]


def eval_cross_entropy(model: MLP, X: np.ndarray, y: np.ndarray) -> float:
    """Mean ``logsumexp(z) - z[y]`` of the evaluation-mode logits, via SciPy."""
    z = model.predict_output(X).astype(np.float64)
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def eval_log_loss(model: MLP, X: np.ndarray, y: np.ndarray) -> float:
    """sklearn log_loss of the softmax of the evaluation-mode output.

    log_loss clips probabilities at machine epsilon, so it equals the exact cross-entropy
    only while every true-class probability is well above it; that is asserted here (an
    over-confident model would make log_loss smaller than the exact value).
    """
    probabilities = scipy_softmax(model.predict_output(X).astype(np.float64), axis=1)
    assert probabilities[np.arange(len(y)), y].min() > 1e-12
    return float(log_loss(y, probabilities, labels=CLASSES))


def history_without_timing(history: dict[str, list[float]]) -> dict[str, list[float]]:
    return {key: values for key, values in history.items() if key != "epoch_seconds"}


def fit(data, *, hidden=(32,), dropout_rate=0.0, dtype=np.float64, model_seed=0, **config):
    X_tr, y_tr, X_va, y_va = data
    model = MLP(64, hidden, 10, dropout_rate=dropout_rate, seed=model_seed, dtype=dtype)
    result = train(model, X_tr, y_tr, X_va, y_va, TrainConfig(**config))
    return model, result


# --- determinism -----------------------------------------------------------------------------


def test_same_seed_and_data_give_bitwise_identical_weights_and_history(digits_small):
    config = dict(max_epochs=3, batch_size=32, optimizer="momentum", learning_rate=0.05, seed=5)
    a, result_a = fit(digits_small, dropout_rate=0.3, dtype=np.float32, **config)
    b, result_b = fit(digits_small, dropout_rate=0.3, dtype=np.float32, **config)
    for p, q in zip(a.parameters, b.parameters, strict=True):
        assert np.array_equal(p.value, q.value), p.name
    assert history_without_timing(result_a.history) == history_without_timing(result_b.history)
    assert (result_a.best_epoch, result_a.epochs_run) == (result_b.best_epoch, result_b.epochs_run)


def test_different_training_seed_gives_different_weights(digits_small):
    config = dict(max_epochs=2, batch_size=32, dropout_rate=0.3)
    a, _ = fit(digits_small, seed=0, **config)
    b, _ = fit(digits_small, seed=1, **config)
    c, _ = fit(digits_small, seed=0, model_seed=1, **config)
    for other in (b, c):
        pairs = zip(a.parameters, other.parameters, strict=True)
        assert any(not np.array_equal(p.value, q.value) for p, q in pairs)


# --- early stopping --------------------------------------------------------------------------


def assert_same_weights(model: MLP, other: MLP) -> None:
    for p, q in zip(model.parameters, other.parameters, strict=True):
        assert np.array_equal(p.value, q.value), p.name


def test_early_stopping_restores_best_weights(digits_small):
    config = dict(max_epochs=40, batch_size=32, learning_rate=1e-2, seed=0)
    model, result = fit(digits_small, patience=3, **config)
    val_loss = result.history["val_loss"]
    assert result.stopped_early
    assert result.best_epoch == int(np.argmin(val_loss))
    assert result.best_epoch < result.epochs_run - 1
    assert result.best_val_loss == min(val_loss)
    # The returned model scores exactly what the history recorded at best_epoch.
    _, _, X_va, y_va = digits_small
    assert (
        abs(evaluate(model, "cross_entropy", X_va, y_va)[0] - val_loss[result.best_epoch]) < 1e-12
    )
    assert abs(eval_cross_entropy(model, X_va, y_va) - val_loss[result.best_epoch]) < 1e-10
    # And holds the weights of a run that simply ended at best_epoch.
    reference, _ = fit(
        digits_small, patience=None, **{**config, "max_epochs": result.best_epoch + 1}
    )
    assert_same_weights(model, reference)


def test_early_stopping_stops_after_exactly_patience_epochs_without_improvement(digits_small):
    patience = 3
    _, result = fit(
        digits_small, max_epochs=40, batch_size=32, learning_rate=1e-2, patience=patience
    )
    val_loss = result.history["val_loss"]
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + patience + 1
    assert len(val_loss) == result.epochs_run
    assert all(v >= val_loss[result.best_epoch] for v in val_loss[result.best_epoch + 1 :])


@pytest.mark.parametrize("patience", [1, 3])
def test_huge_min_delta_stops_after_patience_epochs_and_restores_epoch_zero(
    digits_small, patience
):
    # Only the first epoch can improve on +inf by more than 1e9.
    config = dict(batch_size=32, learning_rate=1e-3, seed=2)
    model, result = fit(digits_small, max_epochs=20, patience=patience, min_delta=1e9, **config)
    assert result.stopped_early
    assert result.best_epoch == 0
    assert result.epochs_run == patience + 1
    reference, _ = fit(digits_small, max_epochs=1, **config)
    assert_same_weights(model, reference)


def test_early_stopping_restores_best_weights_even_when_it_did_not_fire(digits_small):
    config = dict(batch_size=32, optimizer="sgd", learning_rate=1.0, seed=0)
    model, result = fit(digits_small, max_epochs=12, patience=100, **config)
    val_loss = result.history["val_loss"]
    assert not result.stopped_early
    assert result.epochs_run == 12
    assert result.best_epoch == int(np.argmin(val_loss))
    assert result.best_epoch < 11  # the last epoch is not the best one in this run
    _, _, X_va, y_va = digits_small
    assert abs(eval_cross_entropy(model, X_va, y_va) - val_loss[result.best_epoch]) < 1e-10
    reference, _ = fit(digits_small, max_epochs=result.best_epoch + 1, **config)
    assert_same_weights(model, reference)


def test_patience_none_keeps_the_final_weights(digits_small):
    config = dict(batch_size=32, optimizer="sgd", learning_rate=1.0, seed=0)
    model, result = fit(digits_small, max_epochs=12, patience=None, **config)
    val_loss = result.history["val_loss"]
    assert not result.stopped_early
    assert result.epochs_run == 12
    assert result.best_epoch == 11
    assert int(np.argmin(val_loss)) < 11
    _, _, X_va, y_va = digits_small
    assert abs(eval_cross_entropy(model, X_va, y_va) - val_loss[-1]) < 1e-10
    assert result.best_val_loss == val_loss[-1]


def test_min_delta_counts_only_decreases_larger_than_min_delta(digits_small):
    min_delta, patience = 0.1, 3
    config = dict(max_epochs=40, batch_size=32, learning_rate=1e-2, seed=0, patience=patience)
    model, result = fit(digits_small, min_delta=min_delta, **config)
    val_loss = result.history["val_loss"]
    # Improvement: val_loss < best - min_delta, against the last improving epoch's loss.
    best, best_epoch, waited, stop_epoch = np.inf, -1, 0, None
    for epoch, value in enumerate(val_loss):
        if value < best - min_delta:
            best, best_epoch, waited = value, epoch, 0
        else:
            waited += 1
            if waited == patience:
                stop_epoch = epoch
                break
    assert stop_epoch == len(val_loss) - 1
    assert result.stopped_early
    assert result.best_epoch == best_epoch
    assert best_epoch != int(np.argmin(val_loss))  # min_delta changed the choice here
    _, _, X_va, y_va = digits_small
    assert abs(eval_cross_entropy(model, X_va, y_va) - val_loss[best_epoch]) < 1e-10


# --- divergence ------------------------------------------------------------------------------


def test_huge_learning_rate_raises_divergence_error_naming_epoch_and_learning_rate():
    X, y = load_digits(return_X_y=True)  # unstandardized: pixel values 0..16
    model = MLP(64, (32,), 10, activation="relu", seed=0)
    config = TrainConfig(max_epochs=5, optimizer="sgd", learning_rate=1e6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(
            DivergenceError, match=r"non-finite at epoch 0 with learning_rate=1e\+06"
        ) as excinfo:
            train(model, X[:1000], y[:1000], X[1000:], y[1000:], config)
    assert excinfo.value.epoch == 0
    assert excinfo.value.learning_rate == 1e6
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []


# --- evaluation-mode metrics, penalty history, dtypes ----------------------------------------


def test_train_metrics_are_computed_in_evaluation_mode(digits_small):
    X_tr, y_tr, X_va, y_va = digits_small
    model, result = fit(
        digits_small, dropout_rate=0.5, max_epochs=3, batch_size=32, learning_rate=1e-3
    )
    history = result.history
    assert abs(history["train_loss"][-1] - eval_log_loss(model, X_tr, y_tr)) < 1e-10
    assert abs(history["val_loss"][-1] - eval_log_loss(model, X_va, y_va)) < 1e-10
    assert abs(history["train_loss"][-1] - eval_cross_entropy(model, X_tr, y_tr)) < 1e-10
    P_tr = model.predict_output(X_tr)
    assert history["train_accuracy"][-1] == np.mean(np.argmax(P_tr, axis=1) == y_tr)
    assert history["gap_loss"][-1] == pytest.approx(
        history["val_loss"][-1] - history["train_loss"][-1], abs=1e-15
    )
    # A training-mode (dropout) loss of the same weights is far from the recorded value.
    loss_fn = SoftmaxCrossEntropy()
    dropped = loss_fn.forward(
        model.forward(X_tr, training=True, rng=np.random.default_rng(0)), y_tr
    )
    assert abs(dropped - history["train_loss"][-1]) > 1e-3


@pytest.mark.parametrize("kind", ["l1", "l2", "elastic_net"])
def test_penalty_history_equals_closed_form_penalty_of_final_weights(digits_small, kind):
    lam, ratio = 1e-3, 0.3
    model, result = fit(
        digits_small,
        dtype=np.float32,
        max_epochs=2,
        batch_size=32,
        penalty=Penalty(kind, lam, l1_ratio=ratio),
    )
    weights = [W.astype(np.float64) for W in model.weights]
    abs_sum = sum(np.abs(W).sum() for W in weights)
    sq_sum = sum((W**2).sum() for W in weights)
    expected = {
        "l1": lam * abs_sum,
        "l2": lam / 2 * sq_sum,
        "elastic_net": lam * (ratio * abs_sum + (1 - ratio) / 2 * sq_sum),
    }[kind]
    # The weights are float32: allow float32 rounding in the package's sum of squares.
    assert result.history["penalty"][-1] == pytest.approx(expected, rel=1e-6)


def test_default_dtype_is_float32_and_float64_is_available(digits_small):
    X_va = digits_small[2]
    model32, _ = fit(digits_small, dtype=np.float32, max_epochs=1)
    default = MLP(64, (32,), 10)
    assert all(p.value.dtype == np.float32 for p in default.parameters)
    assert all(p.value.dtype == np.float32 for p in model32.parameters)
    assert model32.predict_output(X_va).dtype == np.float32
    model64, _ = fit(digits_small, dtype=np.float64, max_epochs=1)
    assert all(p.value.dtype == np.float64 for p in model64.parameters)
    assert model64.predict_output(X_va).dtype == np.float64


# --- augmentation ----------------------------------------------------------------------------


def test_augmentation_is_called_only_on_training_rows():
    rng = np.random.default_rng(0)
    X_tr = rng.standard_normal((50, 4)).astype(np.float32)
    y_tr = rng.integers(0, 3, 50)
    X_va = (rng.standard_normal((20, 4)) + 100.0).astype(np.float32)
    y_va = rng.integers(0, 3, 20)
    train_rows = {row.tobytes() for row in X_tr}
    val_rows = {row.tobytes() for row in X_va}
    received: list[bytes] = []

    def augment(batch: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        received.extend(row.tobytes() for row in batch)
        return batch + 0.01 * gen.standard_normal(batch.shape).astype(batch.dtype)

    model = MLP(4, (5,), 3, seed=0)
    train(model, X_tr, y_tr, X_va, y_va, TrainConfig(max_epochs=3, batch_size=16), augment=augment)
    assert len(received) == 3 * 50
    assert set(received) <= train_rows
    assert not set(received) & val_rows
    # Each epoch passes every training row exactly once.
    for epoch in range(3):
        assert sorted(received[epoch * 50 : (epoch + 1) * 50]) == sorted(train_rows)


def test_augmentation_never_alters_validation_data():
    rng = np.random.default_rng(1)
    X_tr = rng.standard_normal((40, 4)).astype(np.float32)
    y_tr = rng.integers(0, 3, 40)
    X_va = rng.standard_normal((20, 4)).astype(np.float32)
    y_va = rng.integers(0, 3, 20)
    X_va_before, y_va_before = X_va.copy(), y_va.copy()

    def augment_in_place(batch: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        batch += 1000.0
        return batch

    model = MLP(4, (5,), 3, seed=0)
    config = TrainConfig(max_epochs=2, batch_size=8)
    result = train(model, X_tr, y_tr, X_va, y_va, config, augment=augment_in_place)
    assert np.array_equal(X_va, X_va_before)
    assert np.array_equal(y_va, y_va_before)
    probabilities = scipy_softmax(model.predict_output(X_va_before).astype(np.float64), axis=1)
    expected = log_loss(y_va_before, probabilities, labels=[0, 1, 2])
    assert result.history["val_loss"][-1] == pytest.approx(expected, rel=1e-5)


# --- B03: dropout at prediction time ---------------------------------------------------------


@pytest.fixture(scope="module")
def dropout_model(digits):
    X_tr, y_tr, X_va, y_va = digits
    model = MLP(64, (32, 16), 10, dropout_rate=0.5, seed=0, dtype=np.float64)
    train(model, X_tr, y_tr, X_va, y_va, TrainConfig(max_epochs=3, batch_size=64))
    return model


def test_dropout_model_predicts_the_same_output_twice(dropout_model, digits):
    X_va = digits[2]
    assert np.array_equal(dropout_model.predict_output(X_va), dropout_model.predict_output(X_va))


def test_dropout_model_predicts_like_the_same_weights_without_dropout(dropout_model, digits):
    X_va = digits[2]
    twin = MLP(64, (32, 16), 10, dropout_rate=0.0, seed=123, dtype=np.float64)
    twin.set_state(dropout_model.get_state())
    np.testing.assert_allclose(
        dropout_model.predict_output(X_va), twin.predict_output(X_va), rtol=0, atol=1e-12
    )


def test_prediction_does_not_consume_the_training_random_stream(dropout_model, digits):
    X_tr, _, X_va, _ = digits
    batch = X_tr[:64]
    with_predict, without = np.random.default_rng(99), np.random.default_rng(99)
    dropout_model.forward(batch, training=True, rng=with_predict)
    dropout_model.predict_output(X_va)
    after_predict = dropout_model.forward(batch, training=True, rng=with_predict)
    dropout_model.forward(batch, training=True, rng=without)
    no_predict = dropout_model.forward(batch, training=True, rng=without)
    assert np.array_equal(after_predict, no_predict)
    assert with_predict.bit_generator.state == without.bit_generator.state


# --- digits benchmark and B26 ----------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_benchmark(digits):
    X_tr, y_tr, X_te, y_te = digits
    model = MLP(64, (128,), 10, seed=0)
    config = TrainConfig(max_epochs=30, batch_size=64, optimizer="adam", learning_rate=1e-3)
    result = train(model, X_tr, y_tr, X_te, y_te, config)
    return model, result


def test_digits_mlp_reaches_at_least_95_percent_test_accuracy(digits_benchmark, digits):
    model, result = digits_benchmark
    X_te, y_te = digits[2], digits[3]
    P = model.predict_output(X_te)
    assert np.mean(np.argmax(P, axis=1) == y_te) >= 0.95
    assert result.epochs_run == 30


def test_trained_model_accuracy_equals_numpy_argmax_accuracy(digits_benchmark, digits):
    model, result = digits_benchmark
    X_te, y_te = digits[2], digits[3]
    P = scipy_softmax(model.predict_output(X_te).astype(np.float64), axis=1)
    by_numpy = float(np.mean(np.argmax(P, axis=1) == y_te))
    assert accuracy(P, y_te) == by_numpy
    assert accuracy(P, np.eye(10)[y_te]) == by_numpy
    assert result.history["val_accuracy"][-1] == by_numpy
    assert result.best_val_accuracy == by_numpy


# --- regression through the trainer ----------------------------------------------------------


def test_mse_training_records_sklearn_mse_and_r2():
    X, y = load_diabetes(return_X_y=True)
    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.3, random_state=0)
    X_tr, X_va = standardize(X_tr, X_va)
    y_mean, y_std = y_tr.mean(), y_tr.std()
    y_tr, y_va = (y_tr - y_mean) / y_std, (y_va - y_mean) / y_std
    model = MLP(10, (16,), 1, activation="tanh", seed=0, dtype=np.float64)
    config = TrainConfig(max_epochs=5, batch_size=32, learning_rate=1e-2)
    result = train(model, X_tr, y_tr, X_va, y_va, config, loss="mse")
    prediction = model.predict_output(X_va).ravel()
    assert result.history["val_loss"][-1] == pytest.approx(
        mean_squared_error(y_va, prediction), abs=1e-12
    )
    assert result.history["val_accuracy"][-1] == pytest.approx(
        sklearn_r2_score(y_va, prediction), abs=1e-12
    )
    assert result.history["val_loss"][-1] < result.history["val_loss"][0]


# --- inputs ----------------------------------------------------------------------------------


def test_train_pairs_rows_with_labels_by_position_for_array_likes():
    # X_train is converted with np.asarray, so a shuffled DataFrame is read by position; the
    # labels must be read by position too (a Series indexed by label would misalign them).
    X, y = load_iris(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    config = TrainConfig(max_epochs=3, batch_size=32, optimizer="sgd", learning_rate=0.1)

    def weights_after(X_train, y_train) -> list[np.ndarray]:
        model = MLP(4, (8,), 3, seed=0, dtype=np.float64)
        train(model, X_train, y_train, X, y, config)
        return model.get_state()

    reference = weights_after(X[perm], y[perm])
    as_pandas = weights_after(pd.DataFrame(X).iloc[perm], pd.Series(y).iloc[perm])
    for ref, got in zip(reference, as_pandas, strict=True):
        assert np.array_equal(got, ref)
    as_list = weights_after(X[perm].tolist(), y[perm].tolist())
    for ref, got in zip(reference, as_list, strict=True):
        assert np.array_equal(got, ref)


# --- bookkeeping and validation --------------------------------------------------------------


def test_epochs_are_numbered_from_zero_and_history_has_one_entry_per_epoch(digits_small):
    X_tr, y_tr, X_va, y_va = digits_small
    seen: list[int] = []
    model = MLP(64, (8,), 10, seed=0)
    result = train(
        model,
        X_tr,
        y_tr,
        X_va,
        y_va,
        TrainConfig(max_epochs=4),
        on_epoch=lambda epoch, record: seen.append(epoch),
    )
    assert seen == [0, 1, 2, 3]
    assert result.epochs_run == 4
    assert result.best_epoch == 3
    assert all(len(values) == 4 for values in result.history.values())


def test_on_epoch_exception_propagates_and_stops_training(digits_small):
    X_tr, y_tr, X_va, y_va = digits_small
    calls: list[int] = []

    def prune(epoch: int, record: dict[str, float]) -> None:
        calls.append(epoch)
        if epoch == 1:
            raise KeyboardInterrupt("pruned at epoch 1")

    with pytest.raises(KeyboardInterrupt, match=r"pruned at epoch 1"):
        train(MLP(64, (8,), 10), X_tr, y_tr, X_va, y_va, TrainConfig(max_epochs=5), on_epoch=prune)
    assert calls == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_epochs": 0}, r"max_epochs must be >= 1; got 0"),
        ({"batch_size": 0}, r"batch_size must be >= 1; got 0"),
        ({"optimizer": "rmsprop"}, r"optimizer must be one of sgd, momentum, adam"),
        ({"patience": 0}, r"patience must be >= 1 or None; got 0"),
        ({"min_delta": -0.1}, r"min_delta must be a finite number >= 0; got -0.1"),
        ({"min_delta": float("nan")}, r"min_delta must be a finite number >= 0; got nan"),
    ],
)
def test_train_config_rejects_invalid_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_train_rejects_unknown_loss_and_invalid_learning_rate(digits_small):
    X_tr, y_tr, X_va, y_va = digits_small
    with pytest.raises(ValueError, match=r"loss must be one of cross_entropy, mse; got 'hinge'"):
        train(MLP(64, (8,), 10), X_tr, y_tr, X_va, y_va, TrainConfig(), loss="hinge")
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number > 0; got 0"):
        train(MLP(64, (8,), 10), X_tr, y_tr, X_va, y_va, TrainConfig(learning_rate=0.0))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (lambda y: y - 1, r"train labels must lie in \[0, 3\); got \[-1, 1\]"),
        (lambda y: y + 1, r"train labels must lie in \[0, 3\); got \[1, 3\]"),
        (lambda y: y + 0.5, r"train labels must be integers in \[0, 3\); got float64"),
        (lambda y: y[:-1], r"train targets must have 30 rows, like the inputs; got 29"),
    ],
)
def test_train_rejects_labels_that_would_index_wrongly(labels, message):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4))
    y = np.arange(30) % 3
    with pytest.raises(ValueError, match=message):
        train(MLP(4, (5,), 3, seed=0), X, labels(y), X, y, TrainConfig(max_epochs=1))


def test_train_rejects_inputs_of_the_wrong_width_or_no_rows():
    X = np.zeros((10, 4))
    y = np.zeros(10, dtype=int)
    model = MLP(4, (5,), 3, seed=0)
    with pytest.raises(ValueError, match=r"validation inputs must have shape \(n, 4\); got"):
        train(model, X, y, np.zeros((10, 3)), y, TrainConfig(max_epochs=1))
    with pytest.raises(ValueError, match=r"train inputs must have at least one row; got 0"):
        train(model, X[:0], y[:0], X, y, TrainConfig(max_epochs=1))
