"""Re-evaluation seeds, reuse of earlier runs, reproducibility, determinism, query counts."""

from __future__ import annotations

from mlflow import MlflowClient

from core.report import reevaluation_seeds
from core.study.objective import load_splits, params_from_trial, run_configuration, trial_seed

from .helpers import build_counted, load_study, read_table, reads


def test_reevaluation_seeds_are_fresh_shared_and_grow_by_prefix():
    five = reevaluation_seeds(0, 5)
    assert five[:3] == reevaluation_seeds(0, 3)
    assert len(set(five)) == 5 and all(0 <= s < 2**31 for s in five)
    assert not set(five) & {trial_seed(0, number) for number in range(10_000)}
    assert reevaluation_seeds(1, 5) != five


def test_every_kind_is_reevaluated_on_the_same_seeds_none_of_them_a_trial_seed(
    joint_study, joint_report
):
    runs = read_table(joint_report.out, "reevaluation_runs")
    seeds_by_kind = runs.groupby("kind")["seed"].apply(lambda s: sorted(s))
    assert all(seeds == seeds_by_kind.iloc[0] for seeds in seeds_by_kind)
    trials = load_study(joint_study.spec, joint_study.storage_url).get_trials(deepcopy=False)
    assert not set(runs["seed"]) & {t.user_attrs.get("seed") for t in trials}


def test_reevaluation_run_reproduces_from_its_source_trial_and_seed(joint_study, joint_report):
    runs = read_table(joint_report.out, "reevaluation_runs")
    row = runs[runs["kind"] == "l2"].iloc[-1]
    study = load_study(joint_study.spec, joint_study.storage_url)
    (trial,) = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("mlflow_run_id") == row["source_run_id"]
    ]
    params = params_from_trial(joint_study.spec, trial)
    outcome = run_configuration(
        joint_study.spec, load_splits(joint_study.spec), params, int(row["seed"])
    )
    for key in ("test_accuracy", "gap_test", "gap_val_test", "best_val_loss"):
        assert outcome.metrics[key] == row[key]


def test_reevaluation_runs_are_tagged_under_their_own_parent(joint_study, joint_report):
    client = MlflowClient(joint_study.tracking_uri)
    parent = client.get_run(joint_report.result.reevaluation_parent_run_id)
    assert parent.data.tags["role"] == "reevaluation"
    assert parent.data.tags["reevaluation"] == "true"
    for run_id in read_table(joint_report.out, "reevaluation_runs")["run_id"]:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["reevaluation"] == "true"
        assert {"kind", "seed", "config_hash"} <= set(run.data.tags)


def test_second_build_reuses_every_run_and_writes_identical_files(
    joint_study, joint_report, tmp_path
):
    assert joint_report.result.new_runs == 9 and joint_report.result.reused_runs == 0
    again, calls = build_counted(joint_study, tmp_path)
    assert (again.new_runs, again.reused_runs) == (0, 9)
    assert calls["create_run"] == 0
    first = sorted(p.name for p in joint_report.out.iterdir())
    assert first == sorted(p.name for p in tmp_path.iterdir())
    for name in first:
        assert (tmp_path / name).read_bytes() == (joint_report.out / name).read_bytes(), name


def test_b20_twenty_trial_study_is_read_with_a_bounded_number_of_queries(
    joint_study, joint_report, tmp_path
):
    study = load_study(joint_study.spec, joint_study.storage_url)
    assert joint_study.spec.study.n_trials == 20
    assert len(study.get_trials(deepcopy=False)) >= 20
    first = joint_report.calls
    assert reads(first) <= 25, first
    assert first["search_runs"] == 2  # once before, once after logging re-evaluation runs
    assert first["get_metric_history"] == 0
    _, rebuild = build_counted(joint_study, tmp_path)
    assert sum(rebuild.values()) <= 25, rebuild
    assert rebuild["search_runs"] == 1


def test_report_is_logged_to_the_study_parent_run(joint_study, joint_report):
    client = MlflowClient(joint_study.tracking_uri)
    parent = load_study(joint_study.spec, joint_study.storage_url).user_attrs[
        "mlflow_parent_run_id"
    ]
    assert joint_report.result.logged_run_id == parent
    names = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/report.html", "report/report.md", "report/comparisons.csv"} <= names
    assert "report/learning_curves.png" in names
