"""A bad flag on either command line is one line on stderr, exit code 2, naming the flag,
the bad value and what is allowed (no usage block above it)."""

from __future__ import annotations

import pytest

from benchmarks.cli import main as bench_main
from core.cli import main as regstudy_main

CASES = [
    (regstudy_main, ["run", "studies/quick.toml", "--trials", "abc"],
     ["regstudy run: error:", "--trials", "'abc'", "integer >= 1"]),
    (regstudy_main, ["run", "studies/quick.toml", "--workers", "0"],
     ["--workers", "'0'", "integer >= 1"]),
    (regstudy_main, ["run", "studies/quick.toml", "--workers", "100000"],
     ["--workers", "'100000'", "at most", "per core", "regstudy worker"]),
    (regstudy_main, ["worker", "studies/quick.toml", "--storage", "x"],
     ["regstudy worker: error:", "--tracking-uri"]),
    (regstudy_main, ["worker", "studies/quick.toml", "--storage", "x", "--tracking-uri", "y",
                     "--workers", "2"],
     ["regstudy worker: error:", "--workers 2", "one process", "regstudy run SPEC --workers N"]),
    (regstudy_main, ["worker", "studies/quick.toml", "--workers"], ["--workers:", "one process"]),
    (regstudy_main, ["gradcheck", "--seed", "x"], ["--seed", "'x'", "integer >= 0"]),
    (regstudy_main, ["gradcheck", "--seed", "-3"], ["--seed", "'-3'", "integer >= 0"]),
    (regstudy_main, ["ui", "--port", "70000"], ["--port", "'70000'", "1..65535"]),
    (regstudy_main, ["report", "studies/quick.toml", "--seeds", "-1"], ["--seeds", "'-1'"]),
    (regstudy_main, ["frobnicate"], ["'frobnicate'", "'run'", "'report'"]),
    (regstudy_main, ["run"], ["required: spec"]),
    (regstudy_main, ["run", "studies/quick.toml", "--bogus"], ["--bogus"]),
    (bench_main, ["--sections", "9"], ["python -m benchmarks: error:", "--sections", "'9'",
                                       "1 to 5"]),
    (bench_main, ["--sections", ","], ["--sections", "','"]),
]  # fmt: skip


@pytest.mark.parametrize(("main", "argv", "needles"), CASES, ids=[" ".join(c[1]) for c in CASES])
def test_a_bad_flag_is_one_line_and_exit_code_2(capsys, main, argv, needles):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert "usage:" not in captured.err
    for needle in needles:
        assert needle in captured.err


def test_run_limits_blas_to_one_thread_unless_told(tmp_path, monkeypatch):
    import core.study.parallel as parallel
    import core.study.runner as runner

    limits = []
    real = parallel.limit_blas_threads

    def recording(limit):
        limits.append(limit)
        return real(limit)

    monkeypatch.setattr(parallel, "limit_blas_threads", recording)
    monkeypatch.setattr(runner, "run_study", lambda spec, **kwargs: [])
    monkeypatch.setattr("core.cli._print_results", lambda *args: None)
    base = ["run", "studies/quick.toml", "--no-tracking", "--quiet"]
    base += ["--storage", f"sqlite:///{tmp_path}/o.db"]
    assert regstudy_main(base) == 0
    assert regstudy_main([*base, "--blas-threads", "2"]) == 0
    assert limits == [1, 2]
