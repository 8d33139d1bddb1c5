"""Malformed specs and bad flags: ``python -m core run`` stops with exit code 2 and one
``regstudy: error:`` line naming the field (and the bad value), before either store exists.

Every command of the tables runs once, concurrently, in a module fixture; each test then
checks one outcome.
"""

from __future__ import annotations

import logging
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest

from core.study.spec import SpecError, load_spec

from .helpers import run_cli, spec_sections, toml_text, write_spec


def spec(**overrides) -> str:
    return toml_text(spec_sections("bad", **overrides))


@dataclass(frozen=True)
class Case:
    id: str
    text: str | None  # None: the spec file does not exist
    needles: tuple[str, ...]  # the field, then the bad value where there is one
    flags: tuple[str, ...] = field(default=())


SPEC_CASES = [
    Case("unknown_section", spec(bogus={"x": 1}), ("bogus",)),
    Case("unknown_study_key", spec(study={"n_trails": 3}), ("n_trails",)),
    Case("n_trials_wrong_type", spec(study={"n_trials": "ten"}), ("n_trials", "'ten'")),
    Case("n_trials_zero", spec(study={"n_trials": 0}), ("n_trials", "0")),
    Case(
        "learning_rate_inverted",
        spec(search={"learning_rate": [0.1, 0.001]}),
        ("learning_rate", "0.1", "0.001"),
    ),
    Case(
        "log_range_empty",
        spec(search={"learning_rate": [0.01, 0.01]}),
        ("learning_rate", "0.01"),
    ),
    Case(
        "log_range_touches_zero",
        spec(search={"learning_rate": [0.0, 0.1]}),
        ("learning_rate", "0.0"),
    ),
    Case("unknown_dataset", spec(data={"dataset": "mnist"}), ("dataset", "'mnist'")),
    Case(
        "unknown_regularizer",
        spec(search={"regularizers": ["none", "l3"]}),
        ("regularizers", "'l3'"),
    ),
    Case("unknown_sampler", spec(study={"sampler": "cmaes"}), ("sampler", "'cmaes'")),
    Case("unknown_pruner", spec(study={"pruner": "asha"}), ("pruner", "'asha'")),
    Case("unknown_metric", spec(study={"metric": "val_f1"}), ("metric", "'val_f1'")),
    Case("val_fraction_above_one", spec(data={"val_fraction": 1.5}), ("val_fraction", "1.5")),
    Case(
        "val_plus_test_fraction_too_large",
        spec(data={"val_fraction": 0.5, "test_fraction": 0.4}),
        ("val_fraction", "test_fraction", "0.5", "0.4"),
    ),
    Case("train_fraction_zero", spec(data={"train_fraction": 0}), ("train_fraction", "0")),
    Case("label_noise_one", spec(data={"label_noise": 1.0}), ("label_noise", "1.0")),
    Case(
        "label_noise_on_regression",
        spec(data={"dataset": "diabetes", "label_noise": 0.1}),
        ("label_noise", "'diabetes'"),
    ),
    Case(
        "direction_contradicts_metric",
        spec(study={"metric": "val_loss", "direction": "maximize"}),
        ("direction", "'maximize'", "val_loss"),
    ),
    Case(
        "dropout_rate_upper_bound_one",
        spec(search={"dropout_rate": [0.0, 1.0]}),
        ("dropout_rate", "1.0"),
    ),
    Case("patience_zero", spec(search={"patience": [0, 5]}), ("patience", "0")),
    Case("regularizers_empty", spec(search={"regularizers": []}), ("regularizers", "[]")),
    Case(
        "regularizers_duplicated",
        spec(search={"regularizers": ["l1", "l2", "l1"]}),
        ("regularizers", "'l1'"),
    ),
    Case(
        "shift_on_non_image_dataset",
        spec(search={"augmentations": ["none", "shift"]}),
        ("augmentations", "'shift'", "'iris'"),
    ),
    Case("arms_in_joint_mode", spec(search={"arms": ["none", "l2"]}), ("arms", "per_kind")),
    Case("not_utf8", "\udcff\udcfe[study]\n", ("not UTF-8", "0xff", "offset 0")),
    Case("invalid_toml", '[study]\nname = "bad"\nn_trials = = 3\n', ("TOML", "line 3")),
    Case("missing_study_name", spec(study={"name": None}), ("name", "required")),
    Case("missing_file", None, ("does-not-exist.toml",)),
]

VALID = spec()
FLAG_CASES = [
    Case("storage_redis", VALID, ("--storage", "redis://x"), ("--storage", "redis://x")),
    Case(
        "storage_missing_directory",
        VALID,
        ("--storage", "no/such/dir"),
        ("--storage", "sqlite:///no/such/dir/o.db"),
    ),
]


TRIALS_ZERO = Case("trials_zero", VALID, ("--trials",), ("--trials", "0"))


def _invoke(case: Case, directory: Path) -> subprocess.CompletedProcess:
    path = directory / ("does-not-exist.toml" if case.text is None else "spec.toml")
    if case.text is not None:
        path.write_text(case.text, encoding="utf-8", errors="surrogateescape")
    flags = {
        "--storage": f"sqlite:///{directory / 'o.db'}",
        "--tracking-uri": f"sqlite:///{directory / 'm.db'}",
    }
    flags.update(dict(zip(case.flags[::2], case.flags[1::2], strict=True)))
    args = ["run", str(path), "--quiet"]
    for flag, value in flags.items():
        args += [flag, value]
    return run_cli(*args, timeout=120)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Run every case's command (three at a time) once for the whole module."""
    cases = SPEC_CASES + FLAG_CASES + [TRIALS_ZERO]
    directories = [tmp_path_factory.mktemp(case.id) for case in cases]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(_invoke, cases, directories))
    return {
        case.id: (result, directory)
        for case, result, directory in zip(cases, results, directories, strict=True)
    }


def assert_rejected(result: subprocess.CompletedProcess, directory: Path, needles) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("regstudy: error:"), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    created = sorted(p.name for p in directory.iterdir() if p.name not in ("spec.toml",))
    assert created == [], f"the rejected run created {created}"


@pytest.mark.parametrize("case", SPEC_CASES, ids=[c.id for c in SPEC_CASES])
def test_malformed_spec_exits_2_with_one_line_naming_the_field_and_touches_no_store(
    outcomes, case
):
    result, directory = outcomes[case.id]
    assert_rejected(result, directory, case.needles)


@pytest.mark.parametrize("case", FLAG_CASES, ids=[c.id for c in FLAG_CASES])
def test_bad_store_flag_exits_2_with_one_line_naming_the_flag_and_touches_no_store(outcomes, case):
    result, directory = outcomes[case.id]
    assert_rejected(result, directory, case.needles)


def test_trials_zero_is_rejected_by_the_argument_parser(outcomes):
    result, directory = outcomes[TRIALS_ZERO.id]
    assert result.returncode == 2
    assert "--trials" in result.stderr
    assert "must be an integer >= 1" in result.stderr
    assert sorted(p.name for p in directory.iterdir()) == ["spec.toml"]


def test_the_table_base_spec_is_valid_so_each_case_fails_for_its_own_field(tmp_path):
    path = tmp_path / "base.toml"
    path.write_text(VALID, encoding="utf-8")
    spec_ = load_spec(path)
    assert spec_.study.name == "bad"
    assert spec_.data.dataset == "iris"


def test_integers_are_accepted_where_a_float_is_expected(tmp_path):
    spec_ = load_spec(
        write_spec(
            tmp_path,
            "ints",
            data={"label_noise": 0, "train_fraction": 1},
            search={"learning_rate": [1, 10]},
        )
    )
    assert spec_.data.label_noise == 0.0
    assert spec_.data.train_fraction == 1.0
    assert spec_.search.learning_rate == (1.0, 10.0)


def test_spec_error_message_is_one_line_naming_field_value_and_rule(tmp_path):
    path = write_spec(tmp_path, "inverted", search={"learning_rate": [0.1, 0.001]})
    with pytest.raises(
        SpecError, match=r"^.*search\.learning_rate = \[0\.1, 0\.001\]: .*low"
    ) as info:
        load_spec(path)
    assert "\n" not in str(info.value)


# Values the spec accepts but the run cannot use, and a bad --tracking-uri checked only
# after the Optuna storage was created. Checked in-process through ``core.cli.main`` (the
# same code path as the command, without paying its start-up time again).
RUNTIME_CASES = [
    Case("hidden_width_zero", spec(model={"hidden": [32, 0]}), ("model.hidden", "[32, 0]")),
    Case(
        "hidden_width_huge",
        spec(model={"hidden": [99999999999]}),
        ("model.hidden", "[99999999999]", "1..65536"),
    ),
    Case(
        "hidden_layers_too_heavy",
        spec(model={"hidden": [65536, 65536]}),
        ("model.hidden", "[65536, 65536]", "at most 268,435,456 weights"),
    ),
    Case(
        "hidden_layers_too_heavy_together",
        spec(model={"hidden": [16384] * 4}),
        ("model.hidden", "[16384, 16384, 16384, 16384]", "in all"),
    ),
    Case("hidden_too_deep", spec(model={"hidden": [4] * 65}), ("model.hidden", "at most 64")),
    Case(
        "storage_unknown_driver",
        VALID,
        ("--storage", "'postgresql+nosuch", "postgresql+psycopg2"),
        ("--storage", "postgresql+nosuch://u@127.0.0.1/db"),
    ),
    Case("negative_study_seed", spec(study={"seed": -1}), ("seed", "-1")),
    Case("negative_split_seed", spec(data={"split_seed": -1}), ("split_seed", "-1")),
    Case(
        "n_samples_on_bundled_dataset",
        spec(data={"n_samples": 50}),
        ("n_samples", "50"),
    ),
    Case(
        "learning_rate_infinite",
        spec(search={"learning_rate": [0.001, float("inf")]}),
        ("learning_rate", "inf"),
    ),
    Case("tracking_uri_ftp", VALID, ("--tracking-uri", "ftp://x"), ("--tracking-uri", "ftp://x")),
    Case(
        "tracking_uri_missing_directory",
        VALID,
        ("--tracking-uri", "no/such/dir"),
        ("--tracking-uri", "sqlite:///no/such/dir/m.db"),
    ),
]


@pytest.fixture
def in_process_main(monkeypatch, capsys):
    """``core.cli.main`` run in this process; the logging set-up it does is undone after."""
    from core.cli import main

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    optuna_verbosity = optuna.logging.get_verbosity()
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    def invoke(case: Case, directory: Path) -> subprocess.CompletedProcess:
        path = directory / "spec.toml"
        path.write_text(case.text, encoding="utf-8")
        flags = {
            "--storage": f"sqlite:///{directory / 'o.db'}",
            "--tracking-uri": f"sqlite:///{directory / 'm.db'}",
        }
        flags.update(dict(zip(case.flags[::2], case.flags[1::2], strict=True)))
        argv = ["run", str(path), "--quiet"]
        for flag, value in flags.items():
            argv += [flag, value]
        capsys.readouterr()
        try:
            code = main(argv)
        except Exception as error:  # a crash instead of the exit code 2 the CLI promises
            code = f"raised {type(error).__name__}: {error}"
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, captured.out, captured.err)

    yield invoke
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    optuna.logging.disable_propagation()
    optuna.logging.enable_default_handler()
    optuna.logging.set_verbosity(optuna_verbosity)


@pytest.mark.parametrize("case", RUNTIME_CASES, ids=[c.id for c in RUNTIME_CASES])
def test_input_the_run_cannot_use_exits_2_before_either_store_is_created(
    in_process_main, tmp_path, case
):
    result = in_process_main(case, tmp_path)
    assert_rejected(result, tmp_path, case.needles)


def test_a_storage_driver_that_is_not_installed_is_named_with_the_installed_ones(monkeypatch):
    # Which drivers a machine has varies: here mysqldb's module is missing (it is no
    # dependency of ours), and the listing is told pymysql's module is json (present).
    import importlib.util

    from core.study import urls

    if importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("MySQLdb is installed here")
    monkeypatch.setitem(urls.DRIVERS, "mysql", {"mysqldb": "MySQLdb", "pymysql": "json"})
    with pytest.raises(urls.StorageError) as raised:
        urls.check_storage_url("mysql://bob:hunter2@127.0.0.1/db")
    message = str(raised.value)
    assert "'mysql://bob:***@127.0.0.1/db'" in message
    assert "driver 'mysqldb', the default for mysql://," in message and "MySQLdb" in message
    assert "installed drivers for mysql: mysql+pymysql" in message
    assert "hunter2" not in message


def test_a_bare_postgresql_url_names_sqlalchemys_default_driver(monkeypatch):
    import importlib.util

    from core.study import urls

    if importlib.util.find_spec("psycopg") is not None:
        pytest.skip("psycopg 3 is installed here: postgresql:// works")
    with pytest.raises(urls.StorageError) as raised:
        urls.check_storage_url("postgresql://postgres@127.0.0.1:5432/test")
    message = str(raised.value)
    assert "driver 'psycopg', the default for postgresql://," in message
    assert "installed drivers for postgresql: postgresql+psycopg2" in message
    assert urls.check_storage_url("postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def test_a_database_url_sqlalchemy_cannot_parse_is_one_line():
    from core.study import urls

    with pytest.raises(urls.StorageError, match="not a database URL"):
        urls.check_storage_url("postgresql+psycopg2://u@127.0.0.1:notaport/db")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--tracking-uri", "ftp://x"), "--tracking-uri must be"),
        (("--tracking-uri", "http://127.0.0.1:1"), "does not answer"),
        (("--tracking-uri", "http://[::1/x"), "is not a valid URL"),
        (("--storage", "postgresql+psycopg2://[::1/x"), "is not a valid URL"),
        (("--storage", "sqlite:////"), "names a directory"),
    ],
    ids=["ftp", "no-server", "tracking-ipv6", "storage-ipv6", "storage-root"],
)
def test_refused_input_next_to_the_default_stores_creates_no_runs_directory(
    tmp_path, flags, needle
):
    from .helpers import cli_command, cli_env

    spec_path = write_spec(tmp_path, "defaults")
    result = subprocess.run(
        cli_command("run", str(spec_path), "--quiet", *flags),
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.splitlines()
    assert needle in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec_path.name]


def test_running_out_of_memory_in_a_trial_is_one_line_and_the_trial_failed(
    in_process_main, tmp_path, monkeypatch
):
    import core.study.objective as objective_module

    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 46.6 TiB for an array")

    monkeypatch.setattr(objective_module, "run_configuration", too_big)
    result = in_process_main(Case("oom", VALID, ()), tmp_path)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("regstudy: error: out of memory (Unable to allocate 46.6 TiB")
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")
    (study,) = storage.get_all_studies()
    states = [t.state for t in storage.get_all_trials(study._study_id)]
    assert states == [optuna.trial.TrialState.FAIL]


def test_a_spec_saved_with_a_utf8_byte_order_mark_loads(tmp_path):
    marked, plain = tmp_path / "bom.toml", tmp_path / "plain.toml"
    marked.write_text("\ufeff" + VALID, encoding="utf-8")
    plain.write_text(VALID, encoding="utf-8")
    assert load_spec(marked) == load_spec(plain)
