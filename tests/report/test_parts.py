"""The report's parts on their own: collection frames, pairs, colors, masking, caveats, and a
study that has nothing to compare yet."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient
from optuna.trial import TrialState

import core.report.reevaluate as reevaluate_module
from core.nn import DivergenceError
from core.report import build_report
from core.report.caveats import collect_caveats
from core.report.collect import (
    attach_runs,
    collect_runs,
    collect_trials,
    find_experiment,
    load_studies,
    open_storage,
)
from core.report.compare import compare, comparison_pairs, seed_table
from core.report.plots import KIND_COLORS, learning_curves
from core.report.reevaluate import Configuration, reevaluate
from core.report.summary import study_summary
from core.study.objective import load_splits
from core.study.runner import make_storage, open_study, study_refs
from core.study.space import TrialParams
from core.study.spec import ARMS, load_spec
from core.tracking import Tracker

from .helpers import JOINT, write_spec

PREFIXES = ("run.", "tags.", "params.", "metrics.")


def test_collected_frames_have_prefixed_columns_and_nan_for_missing_metrics(joint_study):
    client = MlflowClient(joint_study.tracking_uri)
    runs = collect_runs(client, find_experiment(client, "rep-joint", joint_study.tracking_uri))
    assert all(column.startswith(PREFIXES) for column in runs.columns)
    assert runs["run.id"].is_unique
    pruned = runs[runs["run.id"] == joint_study.injected["pruned"].run_id]
    assert pruned["metrics.test_balanced_accuracy"].isna().all()
    studies = load_studies(
        joint_study.spec, open_storage(joint_study.storage_url), joint_study.storage_url
    )
    trials = collect_trials(studies)
    assert all(column.startswith("trial.") for column in trials.columns)
    joined = attach_runs(trials, runs)
    assert len(joined) == len(trials)
    running = joined[joined["trial.state"] == "RUNNING"]
    assert list(running["run.id"]) == [joint_study.injected["running"].run_id]


def test_each_pair_is_compared_once():
    kinds = ["none", "l1", "l2", "weight_decay"]
    assert comparison_pairs(kinds, "l2") == [
        ("l1", "none", "vs baseline"),
        ("l2", "none", "vs baseline"),
        ("weight_decay", "none", "vs baseline"),
        ("l1", "l2", "vs best"),
        ("weight_decay", "l2", "vs best"),
    ]
    assert comparison_pairs(kinds, "none") == [(k, "none", "vs baseline") for k in kinds[1:]]
    assert comparison_pairs(["l1", "l2"], "l2") == [("l1", "l2", "vs best")]


def test_every_kind_has_its_own_color_in_every_figure():
    assert set(ARMS) <= set(KIND_COLORS)
    assert len(set(KIND_COLORS.values())) == len(KIND_COLORS)
    histories = pd.DataFrame(
        {
            "run.id": ["a"] * 3 + ["b"] * 3,
            "epoch": [0, 1, 2] * 2,
            "history.train_loss": np.linspace(1, 0.5, 6),
            "history.val_loss": np.linspace(1.1, 0.6, 6),
        }
    )
    best = pd.DataFrame(
        {
            "kind": ["l2", "dropout"],
            "run_id": ["a", "b"],
            "best_trial": ["s#1", "s#2"],
            "best_epoch": [2.0, 1.0],
        }
    )
    figure = learning_curves(histories, best)
    for axes, kind in zip(figure.axes, ["l2", "dropout"], strict=True):
        assert {line.get_color() for line in axes.lines[:2]} == {KIND_COLORS[kind]}


def test_summary_masks_passwords_of_both_stores(joint_study):
    studies = load_studies(
        joint_study.spec, open_storage(joint_study.storage_url), joint_study.storage_url
    )
    summary = study_summary(
        joint_study.spec,
        studies,
        collect_trials(studies),
        load_splits(joint_study.spec),
        storage_url="postgresql+psycopg2://alice:s3cret@db.invalid/optuna",
        tracking_uri="http://bob:hunter2@mlflow.invalid:5000",
        experiment_id="1",
        reevaluation=None,
    ).set_index("field")["value"]
    assert summary["Optuna storage"] == "postgresql+psycopg2://alice:***@db.invalid/optuna"
    assert summary["MLflow tracking"].startswith("http://bob:***@mlflow.invalid:5000")
    assert "s3cret" not in summary.to_string() and "hunter2" not in summary.to_string()


def test_accuracy_objective_on_a_dominant_class_adds_a_warning(tmp_path):
    spec = load_spec(write_spec(tmp_path, JOINT, study={"metric": "val_accuracy"}))
    labels = np.array([1] * 90 + [0] * 10)
    splits = SimpleNamespace(task="classification", y_train=labels, y_test=labels[:30])
    trials = pd.DataFrame(columns=["trial.study", "trial.state", "trial.kind"])
    empty = pd.DataFrame()
    arguments = dict(
        configurations={},
        reevaluation=None,
        summary=empty,
        comparisons=empty,
        searched_kinds=[],
        majority_accuracy=0.9,
        study_names=[],
    )
    caveats = collect_caveats(spec, trials, splits, **arguments)
    assert any("majority class holds 90.0% of the rows" in c for c in caveats)
    balanced = SimpleNamespace(task="classification", y_train=labels[80:], y_test=labels[:30])
    assert not any(
        "majority class holds" in c for c in collect_caveats(spec, trials, balanced, **arguments)
    )


def test_study_with_only_a_failed_trial_reports_that_nothing_can_be_compared(stores, tmp_path):
    spec = load_spec(write_spec(tmp_path, JOINT, study_name="rep-only-failed"))
    (ref,) = study_refs(spec)
    study = open_study(
        spec, make_storage(stores.storage_url, spec), ref, storage_url=stores.storage_url
    )
    Tracker(stores.tracking_uri, spec)  # the experiment, as `regstudy run` makes it
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL, user_attrs={"fail_reason": "KeyboardInterrupt: "}
        )
    )
    result = build_report(
        spec,
        storage_url=stores.storage_url,
        tracking_uri=stores.tracking_uri,
        out_dir=tmp_path / "out",
    )
    assert result.verdict.startswith("No kind has a re-evaluated configuration")
    assert result.html.is_file() and result.new_runs == 0
    caveats = " ".join(result.caveats)
    assert "Study rep-only-failed is not finished: 0 of 20" in caveats
    assert "1 trial(s) failed" in caveats
    assert "No completed trial for none, l2, weight_decay" in caveats
    assert result.tables["failures"]["reason"].tolist() == ["interrupted (KeyboardInterrupt)"]


def test_diverged_reevaluation_is_logged_failed_and_left_out_of_comparisons(
    joint_study, joint_report, monkeypatch
):
    client = MlflowClient(joint_study.tracking_uri)
    experiment = client.create_experiment("rep-diverged-reevaluation")
    spec = joint_study.spec
    configurations = {
        kind: Configuration(
            kind=kind,
            study="s",
            trial_number=n,
            value=0.5,
            run_id=None,
            params=TrialParams(learning_rate=0.01, regularizer=kind, strength=1e-4 if n else 0.0),
            config_hash=f"hash-{kind}",
        )
        for n, kind in enumerate(("none", "l2", "weight_decay"))
    }
    real = reevaluate_module.run_configuration

    def diverging_l2(spec, splits, params, seed):
        if params.regularizer == "l2":
            raise DivergenceError(epoch=1, learning_rate=params.learning_rate)
        return real(spec, splits, params, seed)

    monkeypatch.setattr(reevaluate_module, "run_configuration", diverging_l2)
    result = reevaluate(
        spec,
        configurations,
        [11, 12],
        client=client,
        experiment_id=experiment,
        runs=pd.DataFrame(columns=["run.id"]),
        splits=load_splits(spec),
    )
    assert result.failed == ["l2 seed 11", "l2 seed 12"]
    assert sorted(result.run_ids) == [
        ("none", 11),
        ("none", 12),
        ("weight_decay", 11),
        ("weight_decay", 12),
    ]
    failed = client.search_runs([experiment], "tags.kind = 'l2'")
    assert {run.info.status for run in failed} == {"FAILED"}
    assert all("non-finite" in run.data.tags["fail_reason"] for run in failed)

    runs = collect_runs(client, experiment)
    seeds = seed_table(runs, result, "best_val_loss")
    comparisons = compare(seeds, best="weight_decay", confidence=0.95, task="classification")
    assert list(zip(comparisons["kind"], comparisons["reference"], strict=True)) == [
        ("weight_decay", "none")
    ]
    notes = collect_caveats(
        spec,
        pd.DataFrame(columns=["trial.study", "trial.state", "trial.kind"]),
        SimpleNamespace(task="regression"),
        configurations=configurations,
        reevaluation=result,
        summary=pd.DataFrame(),
        comparisons=comparisons,
        searched_kinds=[],
        majority_accuracy=None,
        study_names=[],
    )
    assert "Re-evaluation diverged for l2 seed 11, l2 seed 12" in " ".join(notes)
