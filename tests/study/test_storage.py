"""BatchedRDBStorage writes what RDBStorage writes, in fewer transactions; SnapshotPruner
decides what the pruner it wraps decides, reading the study once per trial."""

from __future__ import annotations

import math
import pickle
import time
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from core.study.pruning import SnapshotPruner
from core.study.runner import make_pruner
from core.study.spec import parse_spec
from core.study.storage import BatchedRDBStorage

from .helpers import TINY, CountingStorage

VALUES = [0.9, 0.7, float("nan"), float("inf"), -float("inf"), 0.5, 0.25]


def _play(storage: optuna.storages.BaseStorage, *, pruned_at: int | None = None) -> int:
    """The same writes on any storage: params, a report per step, attributes, a state."""
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(storage=storage, study_name="s", sampler=sampler)
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.set_user_attr("seed", 7)
    trial.set_user_attr("nested", {"a": [1, 2]})
    for step, value in enumerate(VALUES):
        trial.report(value, step)
        if pruned_at == step:
            break
    trial.set_user_attr("seed", 8)  # overwritten, as set_user_attr allows
    if pruned_at is None:
        study.tell(trial, 0.25)
    else:
        study.tell(trial, state=TrialState.PRUNED)
    return trial.number


def _reread(url: str):
    (trial,) = optuna.load_study(study_name="s", storage=url).trials
    return trial


def _same_values(a: dict[int, float], b: dict[int, float]) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a
    )


@pytest.mark.parametrize("pruned_at", [None, 5])
def test_batched_storage_stores_what_rdb_storage_stores(tmp_path, pruned_at):
    plain_url = f"sqlite:///{tmp_path}/plain.db"
    batched_url = f"sqlite:///{tmp_path}/batched.db"
    _play(optuna.storages.RDBStorage(plain_url), pruned_at=pruned_at)
    batched = BatchedRDBStorage(batched_url, flush_seconds=3600)
    _play(batched, pruned_at=pruned_at)

    plain, ours = _reread(plain_url), _reread(batched_url)
    assert _same_values(ours.intermediate_values, plain.intermediate_values)
    assert ours.user_attrs == plain.user_attrs == {"seed": 8, "nested": {"a": [1, 2]}}
    assert ours.state == plain.state
    assert ours.value == plain.value  # a pruned trial's value is its last report
    assert ours.params == plain.params
    # The first report went at once (the trial shows it is training); every later report
    # and attribute in one transaction, written before the state.
    assert batched.flushes == 2


def test_buffered_writes_are_read_back_here_and_reach_others_when_due(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    storage = BatchedRDBStorage(url, flush_seconds=3600)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    other = optuna.storages.RDBStorage(url)
    trial.report(1.0, 0)  # the first report is written at once
    assert other.get_trial(trial._trial_id).intermediate_values == {0: 1.0}
    for step in (1, 2):
        trial.report(1.0 / (step + 1), step)
    trial.set_user_attr("run", "abc")

    assert other.get_trial(trial._trial_id).intermediate_values == {0: 1.0}
    mine = storage.get_trial(trial._trial_id)
    assert mine.intermediate_values == {0: 1.0, 1: 0.5, 2: 1 / 3}
    assert mine.user_attrs == {"run": "abc"}

    storage.flush_seconds = 0.0
    trial.report(0.2, 3)  # due now: this write flushes the whole buffer
    seen = other.get_trial(trial._trial_id)
    assert seen.intermediate_values == {0: 1.0, 1: 0.5, 2: 1 / 3, 3: 0.2}
    assert seen.user_attrs == {"run": "abc"}
    assert seen.state == TrialState.RUNNING


def test_a_trial_finished_elsewhere_refuses_the_flush_like_rdb_storage(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    storage = BatchedRDBStorage(url, flush_seconds=3600)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    trial.report(0.5, 0)
    # Another worker's heartbeat check fails the trial meanwhile.
    optuna.storages.RDBStorage(url).set_trial_state_values(trial._trial_id, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [0.5])
    assert _reread(url).state == TrialState.FAIL


def test_a_failed_flush_keeps_its_values_for_the_next_one(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/o.db"
    storage = BatchedRDBStorage(url, flush_seconds=3600)
    trial = optuna.create_study(storage=storage, study_name="s").ask()
    trial.report(1.0, 0)
    for step in (1, 2, 3):
        trial.report(float(step), step)
    real_write = BatchedRDBStorage._write

    def locked(self, trial_id, buffer):
        raise optuna.exceptions.StorageInternalError("database is locked")

    monkeypatch.setattr(BatchedRDBStorage, "_write", locked)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        storage.flush(trial._trial_id)
    monkeypatch.setattr(BatchedRDBStorage, "_write", real_write)
    trial.report(4.0, 4)
    storage.flush(trial._trial_id)
    stored = optuna.storages.RDBStorage(url).get_trial(trial._trial_id)
    assert stored.intermediate_values == {0: 1.0, 1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0}


def test_a_trial_failed_elsewhere_shows_what_the_database_holds(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    storage = BatchedRDBStorage(url, flush_seconds=3600)
    trial = optuna.create_study(storage=storage, study_name="s").ask()
    trial.report(1.0, 0)
    trial.report(2.0, 1)  # buffered
    optuna.storages.RDBStorage(url).set_trial_state_values(trial._trial_id, TrialState.FAIL)
    seen = storage.get_trial(trial._trial_id)
    assert seen.state == TrialState.FAIL
    assert seen.intermediate_values == {0: 1.0}
    assert storage._buffers == {}  # dropped, not kept for a write that cannot happen


def test_a_user_attr_is_stored_as_it_was_when_set(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    storage = BatchedRDBStorage(url, flush_seconds=3600)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    value = [1]
    trial.set_user_attr("list", value)
    value.append(2)
    study.tell(trial, 1.0)
    assert _reread(url).user_attrs == {"list": [1]}


def test_non_json_user_attr_fails_at_once(tmp_path):
    storage = BatchedRDBStorage(f"sqlite:///{tmp_path}/o.db")
    trial = optuna.create_study(storage=storage).ask()
    with pytest.raises(TypeError):
        trial.set_user_attr("bad", object())


def test_batched_storage_pickles_without_its_buffers(tmp_path):
    storage = BatchedRDBStorage(f"sqlite:///{tmp_path}/o.db", flush_seconds=3600)
    trial = optuna.create_study(storage=storage).ask()
    trial.report(0.5, 0)
    copy = pickle.loads(pickle.dumps(storage))
    assert copy._buffers == {} and copy.flush_seconds == 3600


def _curve(trial: optuna.Trial) -> float:
    """A learning curve whose level depends on x, reported for 12 steps."""
    x = trial.suggest_float("x", 0.0, 1.0)
    value = 1.0
    for step in range(12):
        value = x + 1.0 / (step + 1)
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def _history(pruner: optuna.pruners.BasePruner) -> tuple[list[tuple], int]:
    storage = CountingStorage()
    study = optuna.create_study(
        storage=storage, sampler=optuna.samplers.RandomSampler(seed=3), pruner=pruner
    )
    study.optimize(_curve, n_trials=40)
    return [(t.state, t.last_step, t.params["x"]) for t in study.trials], storage.reads


def test_snapshot_pruner_decides_like_the_median_pruner_with_fewer_reads():
    def make():
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)

    bare, bare_reads = _history(make())
    wrapped = SnapshotPruner(make(), refresh_seconds=3600)
    history, reads = _history(wrapped)
    assert history == bare
    assert any(state == TrialState.PRUNED for state, _, _ in bare)  # pruning happened
    assert wrapped.reads == 40  # one snapshot per trial
    # The bare pruner reads the study at every step (up to 12 per trial); the wrapped one
    # once per trial, beside the one read Optuna's own loop makes per trial.
    assert reads <= 2 * 40 + 1 < bare_reads / 3


def test_hyperband_stays_bare_so_samplers_see_its_brackets():
    spec = parse_spec({**TINY, "study": {**TINY["study"], "pruner": "hyperband"}}, source="t")
    assert type(make_pruner(spec)) is optuna.pruners.HyperbandPruner
    median = parse_spec({**TINY, "study": {**TINY["study"], "pruner": "median"}}, source="t")
    assert isinstance(make_pruner(median), SnapshotPruner)


def test_snapshot_pruner_sees_trials_completed_elsewhere_after_refresh():
    study = optuna.create_study()
    for value in (0.1, 0.2, 0.3, 0.4):  # four finished trials: below the startup count
        study.add_trial(optuna.trial.create_trial(value=value, intermediate_values={0: value}))
    trial = study.ask()
    trial.report(5.0, 0)  # far worse than every finished trial

    def decide(pruner: SnapshotPruner) -> bool:
        return pruner.prune(study, study._storage.get_trial(trial._trial_id))

    stale = SnapshotPruner(optuna.pruners.MedianPruner(n_startup_trials=5), refresh_seconds=3600)
    fresh = SnapshotPruner(optuna.pruners.MedianPruner(n_startup_trials=5), refresh_seconds=0)
    assert not decide(stale) and not decide(fresh)
    # A fifth trial completes in another worker.
    study.add_trial(optuna.trial.create_trial(value=0.5, intermediate_values={0: 0.5}))
    assert not decide(stale)  # the snapshot predates it
    assert decide(fresh)


@pytest.mark.parametrize("enqueued", [False, True], ids=["asked", "enqueued"])
def test_a_trial_whose_worker_dies_before_the_loop_beats_still_goes_stale(tmp_path, enqueued):
    # A worker killed inside study.ask() (while its sampler works) never reached the trial
    # loop's heartbeat. Without a beat of its own the trial was never stale: RUNNING for
    # ever, holding a slot of the budget.
    url = f"sqlite:///{tmp_path}/o.db"
    storage = BatchedRDBStorage(url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="stale")
    if enqueued:
        study.enqueue_trial({"x": 0.5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # heartbeats outside optimize()
        trial = study.ask()
    time.sleep(2.2)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[trial.number].state == TrialState.FAIL
