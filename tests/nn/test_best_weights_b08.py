"""Case B08: the best weights are restored whether or not early stopping fired, and the
snapshot is a copy, not a reference that follows later updates."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

import core.nn.trainer as trainer_module
from core.nn import MLP, TrainConfig, train

SCRIPTED_VAL_LOSS = [1.0, 0.8, 0.6, 0.7, 0.75]


@pytest.fixture
def iris_split():
    X, y = load_iris(return_X_y=True)
    X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def test_best_weights_restored_when_patience_never_triggers(monkeypatch, iris_split):
    X_train, X_val, y_train, y_val = iris_split
    real_evaluate = trainer_module.EpochEvaluator.__call__
    calls = {"val": 0}

    def scripted_evaluate(self, model):
        train_loss, train_score, _, val_score = real_evaluate(self, model)
        value = SCRIPTED_VAL_LOSS[calls["val"]]
        calls["val"] += 1
        return train_loss, train_score, value, val_score

    monkeypatch.setattr(trainer_module.EpochEvaluator, "__call__", scripted_evaluate)
    snapshots = []
    model = MLP(4, (8,), 3, seed=0)
    config = TrainConfig(max_epochs=5, batch_size=16, learning_rate=1e-2, patience=10)
    result = train(
        model,
        X_train,
        y_train,
        X_val,
        y_val,
        config,
        on_epoch=lambda epoch, record: snapshots.append(model.get_state()),
    )

    assert result.history["val_loss"] == SCRIPTED_VAL_LOSS
    assert not result.stopped_early
    assert result.best_epoch == 2  # the third epoch, loss 0.6
    assert result.best_val_loss == 0.6
    # Restored weights are the epoch-2 snapshot; a snapshot kept by reference would have
    # followed the updates of epochs 3 and 4 and equal the last weights instead.
    for restored, at_best in zip(model.get_state(), snapshots[2], strict=True):
        assert np.array_equal(restored, at_best)
    assert any(
        not np.array_equal(a, b) for a, b in zip(model.get_state(), snapshots[4], strict=True)
    )


@pytest.mark.parametrize("patience", [2, 50])
def test_returned_model_scores_the_minimum_validation_loss(iris_split, patience):
    X_train, X_val, y_train, y_val = iris_split
    model = MLP(4, (16,), 3, seed=1)
    config = TrainConfig(max_epochs=40, batch_size=16, learning_rate=5e-2, patience=patience)
    result = train(model, X_train, y_train, X_val, y_val, config)

    logits = model.predict_output(X_val).astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    val_loss = -log_probs[np.arange(len(y_val)), y_val].mean()
    assert val_loss == pytest.approx(min(result.history["val_loss"]), abs=1e-6)
    assert result.best_epoch == int(np.argmin(result.history["val_loss"]))


def test_saved_state_is_a_copy_that_later_updates_do_not_change():
    model = MLP(4, (8,), 3, seed=2)
    state = model.get_state()
    for p in model.parameters:
        p.value += 1.0
    assert all(
        not np.array_equal(saved, p.value)
        for saved, p in zip(state, model.parameters, strict=True)
    )
    model.set_state(state)
    assert all(
        np.array_equal(saved, p.value) for saved, p in zip(state, model.parameters, strict=True)
    )
