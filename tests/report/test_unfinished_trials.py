"""Cases B10, B12, B15: failed, killed, dead, running and pruned trials, duplicate runs.

The joint study holds, besides its 20 real trials, one trial of each awkward kind whose
MLflow run carries metrics better than any real trial's (``helpers.inject_awkward_trials``).
The report must count them where they belong and never use those numbers as results.
"""

from __future__ import annotations

import math

from optuna.trial import TrialState

from .helpers import load_study, read_table

UNFINISHED = ("diverged", "killed", "dead", "running")


def all_csv_text(out) -> str:
    return "\n".join(path.read_text() for path in sorted(out.glob("*.csv")))


def test_b10_b12_failed_diverged_and_killed_trials_are_listed_as_failed(joint_study, joint_report):
    study = load_study(joint_study.spec, joint_study.storage_url)
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    failures = read_table(joint_report.out, "failures").set_index("reason")
    assert failures["count"].sum() == len(failed)
    name = joint_study.spec.study.name
    expected = {
        "diverged: training loss became non-finite": "diverged",
        "interrupted (KeyboardInterrupt)": "killed",
        "no reason recorded (the worker died; its heartbeat expired)": "dead",
    }
    for reason, item in expected.items():
        injected = joint_study.injected[item]
        assert f"{name}#{injected.number}" in failures.loc[reason, "trials"]
        assert injected.run_id in failures.loc[reason, "run_ids"]
    states = read_table(joint_report.out, "trial_states").iloc[0]
    assert (states["failed"], states["running"], states["pruned"]) == (len(failed), 1, 1)


def test_b10_b12_partial_metrics_never_become_results(joint_study, joint_report):
    injected = joint_study.injected
    kinds = read_table(joint_report.out, "kinds")
    assert (kinds["best_val_loss"] > 1e-3).all()
    assert (kinds["best_epoch"] < 99).all()
    study = load_study(joint_study.spec, joint_study.storage_url)
    complete_l2 = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs["regularizer"] == "l2"
    ]
    best = kinds.set_index("kind").loc["l2"]
    assert best["best_val_loss"] == min(t.value for t in complete_l2)
    results = "\n".join(
        read_table(joint_report.out, name).to_csv()
        for name in ("kinds", "reevaluation_runs", "reevaluation_summary", "comparisons")
    )
    for item in (*UNFINISHED, "pruned", "duplicate"):
        assert injected[item].run_id not in results, item
    trials = read_table(joint_report.out, "trials")
    assert not set(trials["trial"]) & {injected[item].number for item in UNFINISHED}
    assert 0.0123 not in set(trials["test_accuracy"])  # the injected runs' test accuracy


def test_pruned_trial_is_finished_but_has_no_result(joint_study, joint_report):
    trials = read_table(joint_report.out, "trials")
    (pruned,) = trials[trials["state"] == "PRUNED"].itertuples()
    assert pruned.trial == joint_study.injected["pruned"].number
    assert math.isnan(pruned.value) and math.isnan(pruned.test_accuracy)
    assert pruned.pruned_at_epoch == 1


def test_b15_each_finished_trial_is_listed_once_with_its_own_run(joint_study, joint_report):
    study = load_study(joint_study.spec, joint_study.storage_url)
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    trials = read_table(joint_report.out, "trials")
    assert not trials.duplicated(["study", "trial"]).any()
    assert sorted(trials["trial"]) == sorted(t.number for t in finished)
    duplicate = joint_study.injected["duplicate"]
    assert duplicate.run_id not in all_csv_text(joint_report.out)
    row = trials[trials["trial"] == duplicate.number].iloc[0]
    (trial,) = [t for t in finished if t.number == duplicate.number]
    assert row["run_id"] == trial.user_attrs["mlflow_run_id"]
    assert row["test_accuracy"] == trial.user_attrs["test_accuracy"]


def test_caveats_report_a_running_study_failures_and_pruning(joint_report):
    caveats = " ".join(joint_report.result.caveats)
    assert "Study rep-joint is not finished" in caveats and "1 still marked running" in caveats
    assert "3 trial(s) failed" in caveats
    assert "1 trial(s) were pruned" in caveats
    assert "In joint mode 'none' means no weight penalty only" in caveats
    assert "cannot give p below 0.25" in caveats
