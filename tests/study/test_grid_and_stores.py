"""A grid study walks its grid once and stops; stores that cannot work are refused in one
line before anything is written; the parent run charts the optimization history."""

from __future__ import annotations

import contextlib
import sqlite3

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from core.study.runner import grid_size, run_study

from .helpers import load, run_cli, write_spec


def test_grid_study_stops_at_the_grid_size_and_resumes_without_duplicates(tmp_path):
    spec = load(
        tmp_path,
        "grid",
        study={"sampler": "grid", "grid_points": 2, "n_trials": 40, "pruner": "none"},
        search={"regularizers": ["l2"], "dropout_rate": [0.0, 0.0], "patience": [3, 3]},
    )
    assert grid_size(spec, None) == 4  # learning rate x l2 strength, two points each
    storage = f"sqlite:///{tmp_path}/optuna.db"
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    for _ in range(2):  # the second run finds the grid walked and adds nothing
        run_study(spec, storage_url=storage, tracking_uri=tracking)
    trials = optuna.load_study(study_name="grid", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    pairs = {(t.params["learning_rate"], t.params["l2_strength"]) for t in trials}
    assert len(pairs) == 4

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("grid")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "study"]
    assert parent.info.status == "FINISHED"
    history = client.get_metric_history(parent.info.run_id, "trial_value")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
    by_number = {t.number: t.value for t in trials}
    assert all(m.value == by_number[m.step] for m in history)
    best = client.get_metric_history(parent.info.run_id, "best_value")
    assert min(m.value for m in best) == min(by_number.values())


def test_tracking_uri_naming_a_directory_or_the_optuna_file_exits_2_untouched(tmp_path):
    spec = write_spec(tmp_path, "stores")
    optuna_db = tmp_path / "optuna.db"
    storage = f"sqlite:///{optuna_db}"
    result = run_cli(
        "run", str(spec), "--storage", storage, "--tracking-uri", f"sqlite:///{tmp_path}/"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "--tracking-uri" in result.stderr and "directory" in result.stderr
    assert not optuna_db.exists()

    result = run_cli("run", str(spec), "--storage", storage, "--tracking-uri", storage)
    assert result.returncode == 2
    assert "same file" in result.stderr
    assert not optuna_db.exists()


def test_min_delta_is_checked_with_the_spec(tmp_path):
    spec = write_spec(tmp_path, "delta", train={"min_delta": -1.0})
    result = run_cli(
        "run", str(spec), "--storage", f"sqlite:///{tmp_path}/o.db",
        "--tracking-uri", f"sqlite:///{tmp_path}/m.db",
    )  # fmt: skip
    assert result.returncode == 2
    assert "min_delta" in result.stderr and "-1.0" in result.stderr
    assert not (tmp_path / "o.db").exists() and not (tmp_path / "m.db").exists()


def _journal_mode(path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("PRAGMA journal_mode").fetchone()[0]


def test_sqlite_stores_run_in_wal_mode_and_rest_as_single_files(tmp_path):
    spec = load(tmp_path, "wal", study={"n_trials": 2})
    optuna_db, mlflow_db = tmp_path / "optuna.db", tmp_path / "mlflow.db"
    seen: list[tuple[str, str]] = []

    def during_the_study(study, trial) -> None:
        seen.append((_journal_mode(optuna_db), _journal_mode(mlflow_db)))

    run_study(
        spec,
        storage_url=f"sqlite:///{optuna_db}",
        tracking_uri=f"sqlite:///{mlflow_db}",
        callbacks=[during_the_study],
    )
    assert seen == [("wal", "wal")] * 2
    assert (_journal_mode(optuna_db), _journal_mode(mlflow_db)) == ("delete", "delete")
    assert not (tmp_path / "optuna.db-wal").exists()
    # At rest the one file holds every trial: a copy of it alone misses nothing.
    with contextlib.closing(sqlite3.connect(f"file:{optuna_db}?mode=ro", uri=True)) as db:
        assert db.execute("SELECT count(*) FROM trials").fetchone()[0] == 2
