"""Clear failures for missing stores, studies and experiments; the ``report`` command."""

from __future__ import annotations

import argparse

import pytest

from core.cli.report import add_report_command
from core.report import ReportError, build_report
from core.study.runner import run_study
from core.study.spec import load_spec

from .helpers import JOINT, write_spec


def build(spec, study, tmp_path, **kwargs):
    options = {"storage_url": study.storage_url, "tracking_uri": study.tracking_uri}
    options.update(kwargs)
    return build_report(spec, out_dir=tmp_path / "out", **options)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="regstudy")
    add_report_command(root.add_subparsers(dest="command", required=True))
    return root


def test_unknown_study_name_fails_naming_the_study_and_those_that_exist(joint_study, tmp_path):
    spec = load_spec(write_spec(tmp_path, JOINT, study_name="no-such-study"))
    with pytest.raises(ReportError, match=r"study 'no-such-study' does not exist in .*rep-joint"):
        build(spec, joint_study, tmp_path)
    assert not (tmp_path / "out").exists()


def test_missing_storage_file_is_not_created(joint_study, tmp_path):
    missing = tmp_path / "absent.db"
    with pytest.raises(ReportError, match="no Optuna storage at .*absent.db.* does not exist"):
        build(joint_study.spec, joint_study, tmp_path, storage_url=f"sqlite:///{missing}")
    assert not missing.exists()


def test_missing_mlflow_store_is_not_created(joint_study, tmp_path):
    missing = tmp_path / "absent-mlflow.db"
    with pytest.raises(ReportError, match="no MLflow store at .*absent-mlflow.db"):
        build(joint_study.spec, joint_study, tmp_path, tracking_uri=f"sqlite:///{missing}")
    assert not missing.exists()


def test_study_run_without_tracking_has_no_experiment_to_report(stores, tmp_path):
    spec = load_spec(
        write_spec(tmp_path, JOINT, study_name="rep-untracked", study={"n_trials": 1})
    )
    run_study(spec, storage_url=stores.storage_url, tracking_uri=None)
    with pytest.raises(ReportError, match="no MLflow experiment 'rep-untracked'"):
        build(spec, stores, tmp_path)


def test_spec_changed_since_the_study_ran_is_refused(joint_study, tmp_path):
    spec = load_spec(write_spec(tmp_path, JOINT, model={"hidden": [16]}))
    with pytest.raises(ReportError, match="was created from other spec values"):
        build(spec, joint_study, tmp_path)


def test_seeds_below_one_are_refused(joint_study, tmp_path):
    with pytest.raises(ReportError, match="--seeds must be an integer >= 1; got 0"):
        build(joint_study.spec, joint_study, tmp_path, seeds=0)


def test_report_command_builds_and_prints_where_the_report_is(
    joint_study, joint_report, tmp_path, capsys
):
    out = tmp_path / "cli"
    args = parser().parse_args(
        [
            "report",
            str(joint_study.spec_path),
            "--storage",
            joint_study.storage_url,
            "--tracking-uri",
            joint_study.tracking_uri,
            "--out",
            str(out),
            "--seeds",
            "3",
        ]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed
    assert "re-evaluation runs: 0 trained, 9 reused" in printed
    assert (out / "report.html").is_file()


def test_report_command_on_unknown_study_exits_2_with_one_line(joint_study, tmp_path, capsys):
    path = write_spec(tmp_path, JOINT, study_name="no-such-study")
    args = parser().parse_args(
        [
            "report",
            str(path),
            "--storage",
            joint_study.storage_url,
            "--tracking-uri",
            joint_study.tracking_uri,
            "--out",
            str(tmp_path),
        ]
    )
    assert args.func(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("regstudy: error: study 'no-such-study' does not exist")
    assert error.count("\n") == 1


def test_report_command_refuses_zero_seeds(capsys):
    with pytest.raises(SystemExit, match="2"):
        parser().parse_args(["report", "spec.toml", "--seeds", "0"])
    assert "must be an integer >= 1; got '0'" in capsys.readouterr().err


def test_report_command_defaults_to_reports_of_the_study_name():
    args = parser().parse_args(["report", "studies/quick.toml"])
    assert args.out is None and args.seeds is None
    assert args.storage == "sqlite:///runs/optuna.db"
    assert args.tracking_uri == "sqlite:///runs/mlflow.db"


@pytest.mark.parametrize(
    ("tracking_uri", "needle"),
    [
        ("postgresql://al:pw@127.0.0.1:1/m", "--tracking-uri must be sqlite:///PATH.db"),
        ("http://127.0.0.1:1", "the MLflow server does not answer"),
    ],
)
def test_report_command_refuses_an_unusable_tracking_uri_in_one_line(
    joint_study, tmp_path, capsys, tracking_uri, needle
):
    path = write_spec(tmp_path, JOINT)
    args = parser().parse_args(
        ["report", str(path), "--storage", joint_study.storage_url,
         "--tracking-uri", tracking_uri, "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert args.func(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("regstudy: error:") and needle in error
    assert error.count("\n") == 1
    assert ":pw@" not in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out", ["file", "file/inside", "dangling", "dangling/sub", "holder"])
def test_an_out_that_cannot_be_a_directory_is_refused_before_any_retraining(
    joint_study, tmp_path, capsys, out
):
    from mlflow import MlflowClient

    (tmp_path / "file").write_text("not a directory\n")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "holder" / "report.html").mkdir(parents=True)
    path = write_spec(tmp_path, JOINT)
    client = MlflowClient(joint_study.tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs_before = len(client.search_runs(experiments))
    args = parser().parse_args(
        ["report", str(path), "--storage", joint_study.storage_url,
         "--tracking-uri", joint_study.tracking_uri, "--out", str(tmp_path / out),
         "--seeds", "5"]
    )  # fmt: skip
    assert args.func(args) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"regstudy: error: --out {str(tmp_path / out)!r}: ")
    runs_after = len(client.search_runs(experiments))
    assert runs_after == runs_before  # no re-evaluation run was logged
    assert (tmp_path / "file").read_text() == "not a directory\n"


def test_report_with_the_default_stores_where_there_are_none_creates_no_runs_directory(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, JOINT)
    args = parser().parse_args(["report", str(spec)])
    assert args.func(args) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "no Optuna storage at 'sqlite:///runs/optuna.db'" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]
