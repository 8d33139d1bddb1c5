"""Case B11: four worker processes started at the same instant on one SQLite file."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[2]

SPEC = """
[study]
name = "b11"
n_trials = 20
pruner = "none"
heartbeat_interval = 1
grace_period = 2

[data]
dataset = "iris"

[model]
hidden = [8]

[train]
max_epochs = 2
"""


def test_four_workers_started_together_share_one_sqlite_study_exactly(tmp_path):
    spec = tmp_path / "b11.toml"
    spec.write_text(SPEC)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    command = [sys.executable, "-m", "core", "run", str(spec), "--quiet"]
    command += ["--storage", storage, "--tracking-uri", tracking]
    workers = [
        subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]

    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr.decode()
        assert b"OperationalError" not in stderr
        assert b"database is locked" not in stderr
    study = optuna.load_study(study_name="b11", storage=storage)
    states = Counter(t.state.name for t in study.trials)
    assert states == {"COMPLETE": 20}
    assert study.user_attrs["processes_attached"] == 4
    # Each trial names the process that ran it (host:pid); the work was shared.
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert 2 <= len(workers) <= 4 and all(w.count(":") == 1 for w in workers)
    # Four samplers with four seeds: no proposal is replayed.
    assert len({t.params["learning_rate"] for t in study.trials}) == 20

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("b11")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    trial_runs = [r for r in runs if r.data.tags.get("role") == "trial"]
    parents = [r for r in runs if r.data.tags.get("role") == "study"]
    assert len(parents) == 1
    assert len(trial_runs) == 20
    assert sorted(int(r.data.tags["trial_number"]) for r in trial_runs) == list(range(20))
    assert {r.info.status for r in trial_runs} == {"FINISHED"}
