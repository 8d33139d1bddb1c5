"""``regstudy ui`` binds to loopback unless told otherwise, and then warns (B22)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.cli import build_parser, cmd_ui, is_loopback

from .helpers import run_cli


def command_host(line: str) -> str:
    words = line.split()
    return words[words.index("--host") + 1]


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """The bytes of a SQLite file holding MLflow's schema (made once: it takes a second)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("store") / "m.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path.read_bytes()


@pytest.fixture
def store(mlflow_store):
    """``store(directory)``: the URI of an MLflow store in ``directory``."""

    def make(directory) -> str:
        (directory / "m.db").write_bytes(mlflow_store)
        return f"sqlite:///{directory / 'm.db'}"

    return make


def test_dry_run_binds_loopback_whatever_the_environment_says(tmp_path, store):
    result = run_cli(
        "ui",
        "--dry-run",
        "--tracking-uri",
        store(tmp_path),
        MLFLOW_HOST="0.0.0.0",
        HOST="0.0.0.0",
        MLFLOW_UI_HOST="0.0.0.0",
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert " -m mlflow ui " in line
    assert command_host(line) == "127.0.0.1"
    assert "--host 127.0.0.1" in line
    assert result.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.db"]  # printed, not started


def ui(capsys, *argv: str) -> tuple[int, str, str]:
    """``regstudy ui ARGV`` in-process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = cmd_ui(build_parser().parse_args(["ui", *argv]))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_non_loopback_host_without_allow_remote_exits_2_naming_allow_remote(
    capsys, tmp_path, store
):
    code, out, err = ui(
        capsys, "--dry-run", "--host", "0.0.0.0", "--tracking-uri", store(tmp_path)
    )
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith("regstudy: error:")
    assert "--allow-remote" in line
    assert "'0.0.0.0'" in line
    assert out == ""


def test_allow_remote_dry_run_prints_the_command_and_warns_there_is_no_authentication(
    capsys, tmp_path, store
):
    code, out, err = ui(
        capsys,
        "--dry-run",
        "--host",
        "0.0.0.0",
        "--allow-remote",
        "--tracking-uri",
        store(tmp_path),
    )
    assert code == 0, err
    (line,) = out.splitlines()
    assert command_host(line) == "0.0.0.0"
    assert "regstudy: warning:" in err
    assert "no authentication" in err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "localhost.example.com"])
def test_every_non_loopback_host_is_refused_without_allow_remote(host, capsys, tmp_path, store):
    args = build_parser().parse_args(
        ["ui", "--dry-run", "--host", host, "--tracking-uri", store(tmp_path)]
    )
    assert cmd_ui(args) == 2
    captured = capsys.readouterr()
    assert "--allow-remote" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_hosts_are_served_without_a_warning(host, capsys, tmp_path, store):
    assert is_loopback(host)
    args = build_parser().parse_args(
        ["ui", "--dry-run", "--host", host, "--tracking-uri", store(tmp_path)]
    )
    assert cmd_ui(args) == 0
    captured = capsys.readouterr()
    assert command_host(captured.out.strip()) == host
    assert captured.err == ""


def test_the_parser_default_host_is_loopback_even_with_host_variables_set(monkeypatch):
    for name in ("MLFLOW_HOST", "HOST", "MLFLOW_UI_HOST", "REGSTUDY_HOST"):
        monkeypatch.setenv(name, "0.0.0.0")
    args = build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1"
    assert args.allow_remote is False


def test_mask_url_hides_passwords_in_the_user_part_and_in_the_query():
    from core.study.urls import mask_url

    assert mask_url("postgresql+psycopg2://bob:hunter2@db:5432/x") == (
        "postgresql+psycopg2://bob:***@db:5432/x"
    )
    assert mask_url("postgresql://bob@db/x?sslmode=require&password=hunter2") == (
        "postgresql://bob@db/x?sslmode=require&password=***"
    )
    assert mask_url("sqlite:///runs/optuna.db") == "sqlite:///runs/optuna.db"


@pytest.mark.parametrize(
    ("uri", "needles"),
    [
        ("ftp://x", ["'ftp://x'", "sqlite:///PATH", "postgresql+DRIVER://"]),
        ("http://127.0.0.1:5000", ["cannot back the UI"]),
        ("sqlite:///{tmp}/no/such/dir/m.db", ["does not exist"]),
        ("sqlite:///{tmp}/missing.db", ["missing.db", "does not exist", "run a study first"]),
        ("sqlite:///", ["'sqlite:///'", "cannot back the UI"]),
        ("postgresql+nosuch://u@127.0.0.1/x", ["unknown driver 'nosuch'", "postgresql+psycopg2"]),
    ],
)
@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)], ids=["serve", "dry-run"])
def test_a_store_the_ui_cannot_serve_is_one_line_and_creates_nothing(
    capsys, tmp_path, uri, needles, dry_run
):
    uri = uri.format(tmp=tmp_path)
    code, out, err = ui(capsys, *dry_run, "--port", "5999", "--tracking-uri", uri)
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith("regstudy: error: --tracking-uri")
    for needle in needles:
        assert needle in line
    assert out == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"just some notes\n" * 20, "is not a SQLite database"),
        (None, "is a database but not an MLflow store"),
    ],
    ids=["text-file", "optuna-storage"],
)
def test_a_file_that_is_no_mlflow_store_is_named_for_what_it_is(capsys, tmp_path, content, needle):
    path = tmp_path / "m.db"
    if content is None:
        import optuna

        optuna.create_study(storage=f"sqlite:///{path}", study_name="s")
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    code, out, err = ui(capsys, "--dry-run", "--tracking-uri", f"sqlite:///{path}")
    assert code == 2
    (line,) = err.splitlines()
    assert needle in line
    assert str(path) in line
    assert path.read_bytes() == before
    assert out == ""


@pytest.mark.parametrize("flags", [(), ("--tracking-uri", "sqlite:///runs/mlflow.db")])
def test_the_default_store_before_any_study_says_so_and_creates_no_directory(
    capsys, tmp_path, monkeypatch, flags
):
    monkeypatch.chdir(tmp_path)
    code, out, err = ui(capsys, "--dry-run", *flags)
    assert code == 2
    (line,) = err.splitlines()
    assert "runs/mlflow.db" in line and "does not exist" in line
    assert list(tmp_path.iterdir()) == []


def test_the_run_summary_names_the_stores_a_report_should_read(tmp_path):
    from .helpers import write_spec

    spec = write_spec(tmp_path, "summary", study={"n_trials": 2}, train={"max_epochs": 2})
    storage, tracking = f"sqlite:///{tmp_path}/o.db", f"sqlite:///{tmp_path}/m.db"
    result = run_cli("run", str(spec), "--storage", storage, "--tracking-uri", tracking)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("Report:")]
    # As run here (this interpreter, -m core, from the repository root), so the hint can
    # be pasted there as it is.
    from .helpers import REPO

    executable = Path(sys.executable)
    if executable.is_relative_to(REPO):
        executable = executable.relative_to(REPO)
    program = f"{executable} -m core"
    assert line.split(None, 1)[1] == (
        f"{program} report {spec} --storage {storage} --tracking-uri {tracking}"
    )
    assert f"{program} ui --tracking-uri {tracking}" in result.stdout


def test_run_hints_quote_paths_with_spaces_so_they_paste(tmp_path):
    import shlex

    from .helpers import write_spec

    place = tmp_path / "my runs"
    place.mkdir()
    spec = write_spec(place, "spaced", study={"n_trials": 1}, train={"max_epochs": 1})
    storage, tracking = f"sqlite:///{place}/o.db", f"sqlite:///{place}/m.db"
    result = run_cli("run", str(spec), "--storage", storage, "--tracking-uri", tracking)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("Report:")]
    words = shlex.split(line.split(None, 1)[1])
    assert words[-6:] == ["report", str(spec), "--storage", storage, "--tracking-uri", tracking]


def test_a_sqlite_database_without_tables_is_no_store_to_serve(capsys, tmp_path):
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(tmp_path / "m.db")) as db:
        db.execute("PRAGMA user_version = 7")  # a header, no tables
        db.commit()
    code, out, err = ui(capsys, "--dry-run", "--tracking-uri", f"sqlite:///{tmp_path}/m.db")
    assert code == 2
    assert "holds no MLflow store" in err and out == ""


def test_an_empty_file_is_no_store_to_serve_yet(capsys, tmp_path):
    (tmp_path / "m.db").touch()  # a run would make its store here; the UI has nothing
    code, out, err = ui(capsys, "--dry-run", "--tracking-uri", f"sqlite:///{tmp_path}/m.db")
    assert code == 2
    (line,) = err.splitlines()
    assert "holds no MLflow store" in line and "run a study against it first" in line
    assert (tmp_path / "m.db").stat().st_size == 0


def test_a_postgresql_store_is_checked_before_the_ui_starts(capsys, postgres_databases):
    import sqlalchemy
    from mlflow import MlflowClient

    missing = postgres_databases.base.rsplit("/", 1)[0] + "/regstudy_no_such_database"
    empty, other, mlflow = (postgres_databases.create() for _ in range(3))
    engine = sqlalchemy.create_engine(other)
    with engine.begin() as connection:  # named like MLflow's, but not its store
        connection.execute(sqlalchemy.text("CREATE TABLE experiments (id integer)"))
        connection.execute(sqlalchemy.text("CREATE TABLE runs (id integer)"))
    engine.dispose()
    MlflowClient(mlflow).search_experiments()  # MLflow makes its schema

    for uri, needle in (
        (missing, "cannot be opened"),
        (empty, "holds no MLflow store"),
        (other, "holds tables, but not MLflow's"),
    ):
        code, out, err = ui(capsys, "--dry-run", "--tracking-uri", uri)
        assert code == 2, err
        (line,) = err.splitlines()
        assert line.startswith("regstudy: error: --tracking-uri") and needle in line
        assert out == ""
    code, out, err = ui(capsys, "--dry-run", "--tracking-uri", mlflow)
    assert code == 0, err
    assert f"--backend-store-uri {mlflow}" in out
