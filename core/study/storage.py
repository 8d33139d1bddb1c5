"""The Optuna storage of the trial loop: per-epoch reports written in batches.

A trial reports one intermediate value per epoch. ``RDBStorage`` writes each in its own
transaction, and a digits epoch trains in a few milliseconds while a SQLite commit takes
as long (case B20 measured the same for MLflow). ``BatchedRDBStorage`` keeps a running
trial's intermediate values and user attributes in memory and writes them in one
transaction: at the first report (so a trial that is training shows it at once), every
``flush_seconds`` (so other workers and dashboards follow a long trial; the study loop
sets it to at most the heartbeat interval), and always before the trial's state changes,
so a finished trial is complete in the database. Params, system attributes and states
are written at once, as before: samplers of other workers read running trials' params
(TPE's constant liar) and pruners write their rungs as system attributes.

``get_trial`` in this process sees the trial's buffered writes (Optuna's ``tell`` reads a
pruned trial's last value that way); listing the study's trials shows what the database
holds, as another process sees it: a running trial's latest values up to
``flush_seconds`` late. Pruners compare completed trials only, so their decisions do not
change. A worker that dies loses its running trial's unwritten values, and the heartbeat
fails that trial anyway. A failed flush keeps the buffer for the next attempt.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage

# Optuna's RDB models and session helper are internal. The flush needs them to write many
# rows in one transaction (and the first heartbeat hooks RDBStorage._create_new_trial, the
# method Optuna's caching wrapper calls); optuna<6 is pinned in pyproject.toml and
# tests/study/test_storage.py compares what the flush writes with plain RDBStorage.
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

FLUSH_SECONDS = 5.0


@dataclass
class _Buffer:
    values: dict[int, float] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)

    def __bool__(self) -> bool:
        return bool(self.values or self.attrs)


class BatchedRDBStorage(RDBStorage):
    """``RDBStorage`` that batches a running trial's intermediate values and user attributes.

    Args:
        flush_seconds: Longest a buffered write waits for the database.
        Everything else: as for ``optuna.storages.RDBStorage``.
    """

    def __init__(self, *args: Any, flush_seconds: float = FLUSH_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_seconds = flush_seconds
        self._buffers: dict[int, _Buffer] = {}
        self._buffer_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # flushes of one trial commit in order
        self._reporting: set[int] = set()  # trials whose first report is written
        self.flushes = 0  # transactions written by flush(), for tests and benchmarks

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state.pop("_buffer_lock", None)
        state.pop("_flush_lock", None)
        state["_buffers"] = {}
        state["_reporting"] = set()
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._buffer_lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        with self._buffer_lock:
            self._buffer(trial_id).values[step] = float(intermediate_value)
            first = trial_id not in self._reporting
            self._reporting.add(trial_id)
        if first:
            self.flush(trial_id)
        else:
            self._flush_if_due(trial_id)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        # Not JSON: fail here, as RDBStorage would, not at the flush. The round trip is also
        # the copy kept, so a list changed by the caller afterwards is stored as it was.
        value = json.loads(json.dumps(value))
        with self._buffer_lock:
            self._buffer(trial_id).attrs[key] = value
        self._flush_if_due(trial_id)

    def _buffer(self, trial_id: int) -> _Buffer:
        """The trial's buffer (hold ``_buffer_lock``); its age counts from the first write
        since the last flush."""
        buffer = self._buffers.setdefault(trial_id, _Buffer())
        if not buffer:
            buffer.since = time.monotonic()
        return buffer

    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        # The method both create_new_trial and Optuna's caching wrapper call.
        trial = super()._create_new_trial(study_id, template_trial)
        if trial.state == TrialState.RUNNING:
            self._first_beat(trial._trial_id)
        return trial

    def _first_beat(self, trial_id: int) -> None:
        """A heartbeat as soon as a trial runs. Optuna fails stale trials by their last
        beat, and a trial with none is never stale: a worker killed while its sampler
        worked (between creating the trial and the trial loop's first beat) left it
        RUNNING for ever, holding a slot of the budget, so the study never ended."""
        if self.get_heartbeat_interval():
            self.record_heartbeat(trial_id)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        self.flush(trial_id)
        if state.is_finished():
            with self._buffer_lock:
                self._reporting.discard(trial_id)
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and state == TrialState.RUNNING:  # an enqueued trial, taken
            self._first_beat(trial_id)
        return changed

    def get_trial(self, trial_id: int) -> FrozenTrial:
        trial = super().get_trial(trial_id)
        with self._buffer_lock:
            if trial.state.is_finished():
                # Finished elsewhere (a heartbeat failed it): the database refuses the
                # buffered writes, so they are dropped rather than shown.
                self._buffers.pop(trial_id, None)
                self._reporting.discard(trial_id)
                return trial
            buffer = self._buffers.get(trial_id)
            if not buffer:
                return trial
            values, attrs = dict(buffer.values), copy.deepcopy(buffer.attrs)
        trial.intermediate_values = {**trial.intermediate_values, **values}
        trial.user_attrs = {**trial.user_attrs, **attrs}
        return trial

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self.get_trial(trial_id).user_attrs

    def _flush_if_due(self, trial_id: int) -> None:
        buffer = self._buffers.get(trial_id)
        if buffer and time.monotonic() - buffer.since >= self.flush_seconds:
            self.flush(trial_id)

    def flush(self, trial_id: int) -> None:
        """Write the trial's buffered values and attributes now.

        Raises ``optuna.exceptions.UpdateFinishedTrialError`` when the trial finished
        meanwhile (a heartbeat failed it); its buffer is dropped, as the database refuses
        writes to finished trials anyway. Any other error puts the buffer back (writes
        made since take precedence) and propagates.
        """
        with self._flush_lock:
            with self._buffer_lock:
                buffer = self._buffers.pop(trial_id, None)
            if not buffer:
                return
            try:
                self._write(trial_id, buffer)
            except optuna.exceptions.UpdateFinishedTrialError:
                with self._buffer_lock:
                    self._reporting.discard(trial_id)
                raise
            except BaseException:
                with self._buffer_lock:
                    newer = self._buffers.get(trial_id, _Buffer())
                    self._buffers[trial_id] = _Buffer(
                        values={**buffer.values, **newer.values},
                        attrs={**buffer.attrs, **newer.attrs},
                        since=buffer.since,
                    )
                raise

    def _write(self, trial_id: int, buffer: _Buffer) -> None:
        with _create_scoped_session(self.scoped_session) as session:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
            self.check_trial_is_updatable(trial_id, trial.state)
            if buffer.values:
                table = models.TrialIntermediateValueModel
                steps = list(buffer.values)
                # A step written by an earlier flush is updated, as RDBStorage would; the
                # trial reports each step once, so this is rare.
                session.execute(
                    sqlalchemy.delete(table).where(
                        table.trial_id == trial_id, table.step.in_(steps)
                    )
                )
                rows = []
                for step, value in buffer.values.items():
                    stored, kind = table.intermediate_value_to_stored_repr(value)
                    rows.append(
                        {
                            "trial_id": trial_id,
                            "step": step,
                            "intermediate_value": stored,
                            "intermediate_value_type": kind,
                        }
                    )
                session.execute(sqlalchemy.insert(table), rows)
            for key, value in buffer.attrs.items():
                self._set_trial_attr_without_commit(
                    session, models.TrialUserAttributeModel, trial_id, key, value
                )
        self.flushes += 1
