"""The ``regstudy`` command. The only module that prints or draws progress bars.

Exit codes: 0 success, 1 a failed check or run, 2 bad input (spec, flag, dataset, storage
URL), 130 interrupted by Ctrl-C, 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.cli.args import Parser, non_negative_int, positive_int
from core.study.errors import TooManyFailures
from core.study.interrupts import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    exit_code,
    raise_terminated,
)

EXIT_BAD_INPUT = 2
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

logger = logging.getLogger("regstudy")


class _TqdmHandler(logging.Handler):
    """Send log records through tqdm.write so they do not tear the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def _setup_logging(quiet: bool, verbose: bool) -> None:
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    if verbose:
        root.setLevel(logging.DEBUG)
    # MLflow and its migrations are chatty at INFO; keep what a user should act on.
    for name in ("mlflow", "alembic", "sqlalchemy", "urllib3", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _quiet_optuna() -> None:
    """Optuna's and MLflow's records through our handler, warnings and up (called after
    they are imported: MLflow sets its own level on import)."""
    import mlflow  # noqa: F401 - imported for its logger configuration
    import optuna

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _fail(message: str) -> int:
    print(f"regstudy: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    from core.data import UnknownDatasetError
    from core.study.errors import StorageError
    from core.study.spec import SpecError

    return (SpecError, StorageError, UnknownDatasetError)


class _Progress:
    """A tqdm bar over finished trials with the running best and elapsed time."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.started = time.monotonic()

    def on_study(self, study, remaining: int) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if self.bar is not None:
            self.bar.close()
        self.bar = tqdm(total=remaining, desc=study.study_name, unit="trial", file=sys.stderr)

    def __call__(self, study, trial) -> None:
        if self.bar is None:
            return
        from optuna.trial import TrialState

        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            self.bar.update(1)
        try:
            best = f"{study.best_value:.4g}"
        except ValueError:
            best = "-"
        self.bar.set_postfix_str(f"best={best} last={trial.state.name.lower()}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary(studies, spec) -> str:
    from optuna.trial import TrialState

    lines = []
    for study in studies:
        trials = study.get_trials(deepcopy=False)
        counts = {
            s.name.lower(): 0
            for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
        }
        for t in trials:
            counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
        lines.append(
            f"study {study.study_name}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
        )
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            continue
        complete.sort(key=lambda t: t.value, reverse=spec.study.optuna_direction == "maximize")
        lines.append(
            f"  {'trial':>5} {'regularizer':<13} {'learning_rate':>13} "
            f"{spec.study.metric:>12} {'test_acc':>9} {'best_ep':>7}"
        )
        for t in complete[:10]:
            test = t.user_attrs.get("test_accuracy", float("nan"))
            lines.append(
                f"  {t.number:>5} {t.user_attrs.get('regularizer', '?'):<13} "
                f"{t.params.get('learning_rate', float('nan')):>13.3g} {t.value:>12.4f} "
                f"{test:>9.4f} {int(t.user_attrs.get('best_epoch', -1)):>7}"
            )
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from core.study.spec import load_spec
    from core.study.urls import check_storage_url, check_tracking_uri

    # Spec and URLs first: bad input is rejected before Optuna and MLflow are imported.
    spec = load_spec(args.spec)
    check_storage_url(args.storage)
    if not args.no_tracking:
        check_tracking_uri(args.tracking_uri)
    from core.study.parallel import limit_blas_threads
    from core.study.runner import run_study

    _quiet_optuna()
    tracking_uri = None if args.no_tracking else args.tracking_uri
    started = time.monotonic()
    if args.workers > 1:
        return _run_workers(args, spec, tracking_uri, started)
    progress = _Progress(args.quiet)
    try:
        # One BLAS thread unless asked: measured on studies/digits.toml, 22 s against 31 s
        # with OpenBLAS's default two (threading small products costs more than it gives).
        with limit_blas_threads(args.blas_threads or 1):
            studies = run_study(
                spec,
                storage_url=args.storage,
                tracking_uri=tracking_uri,
                n_trials=args.trials,
                callbacks=[progress],
                on_study=progress.on_study,
            )
    finally:
        progress.close()
    if not args.quiet:
        _print_results(studies, spec, args, started)
    return 0


def _run_workers(args, spec, tracking_uri, started) -> int:
    from tqdm import tqdm

    from core.study.parallel import run_parallel
    from core.study.runner import make_storage, study_refs

    bar = None
    if not args.quiet:
        bar = tqdm(
            desc=f"{spec.study.name} x{args.workers} workers", unit="trial", file=sys.stderr
        )

    def on_progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        codes = run_parallel(
            spec,
            workers=args.workers,
            storage_url=args.storage,
            tracking_uri=tracking_uri,
            n_trials=args.trials,
            blas_threads=args.blas_threads or 1,
            on_progress=on_progress,
        )
    finally:
        if bar is not None:
            bar.close()
    failed = [code for code in codes if code != 0]
    # Stopped by a signal: a handled Ctrl-C or SIGTERM (130, 143), or killed (negative).
    signalled = bool(failed) and all(
        code in (EXIT_INTERRUPTED, EXIT_TERMINATED) or code < 0 for code in failed
    )
    if signalled and _budget_spent(args, spec):
        # Workers were signalled directly, and the others finished the studies anyway.
        print(
            f"regstudy: warning: {len(failed)} of {len(codes)} workers were stopped by a "
            "signal; the others finished every study's budget",
            file=sys.stderr,
        )
        failed = []
    elif signalled and all(code > 0 for code in failed):
        # The workers were sent SIGTERM (or SIGINT) directly, not this process: they
        # marked their trials; say so as for one process.
        print(f"{_after_echo()}regstudy: {_interrupted_message(max(failed))}", file=sys.stderr)
        return max(failed)
    if failed:
        print(
            f"regstudy: {len(failed)} of {len(codes)} workers failed (exit codes {failed}); "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 1
    if not args.quiet:
        import optuna

        storage = make_storage(args.storage, spec)
        studies = [
            optuna.load_study(study_name=ref.name, storage=storage) for ref in study_refs(spec)
        ]
        _print_results(studies, spec, args, started)
    return 0


_STOPPED = {EXIT_INTERRUPTED: "interrupted", EXIT_TERMINATED: "terminated"}


def _after_echo() -> str:
    """A line break on a terminal, past the ^C it echoed or the progress bar; nothing in a
    log or pipe, where the message stays one line."""
    return "\n" if sys.stderr.isatty() else ""


def _budget_spent(args, spec) -> bool:
    import optuna

    from core.study.loop import FINISHED, count
    from core.study.runner import make_storage, study_budget, study_refs

    storage = make_storage(args.storage, spec)
    total = args.trials or spec.study.n_trials
    try:
        return all(
            count(optuna.load_study(study_name=ref.name, storage=storage), FINISHED)
            >= study_budget(spec, ref, total)
            for ref in study_refs(spec)
        )
    except KeyError:  # a study was never created
        return False


def _interrupted_message(code: int) -> str:
    return (
        f"{_STOPPED[code]}; a running trial is marked failed and its run closed. "
        "Run the same command again to resume."
    )


def _print_results(studies, spec, args, started) -> None:
    print(_summary(studies, spec))
    print(f"\nfinished in {time.monotonic() - started:.0f} s")
    print(f"Optuna storage: {_masked(args.storage)}")
    if not args.no_tracking:
        from core.study.errors import DEFAULT_STORAGE, DEFAULT_TRACKING_URI

        print(f"MLflow runs:    {_masked(args.tracking_uri)} (experiment {spec.study.name!r})")
        program = _program()
        if args.tracking_uri == DEFAULT_TRACKING_URI:
            print(f"Browse them:    {program} ui   (then open http://127.0.0.1:5000)")
        elif args.tracking_uri.startswith("sqlite:"):
            print(f"Browse them:    {program} ui --tracking-uri {shlex.quote(args.tracking_uri)}")
        same_stores = (
            f" --storage {shlex.quote(_masked(args.storage))}"
            f" --tracking-uri {shlex.quote(_masked(args.tracking_uri))}"
            if args.storage != DEFAULT_STORAGE or args.tracking_uri != DEFAULT_TRACKING_URI
            else ""
        )
        print(f"Report:         {program} report {shlex.quote(args.spec)}{same_stores}")


def _program() -> str:
    """The command as the user ran it, so a hint can be pasted in the same directory:
    ``.venv/bin/regstudy`` from ``make study``, ``.venv/bin/python -m core`` from a
    module run."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else "regstudy"
    if Path(program).name in ("__main__.py", "-c"):
        return f"{shlex.quote(_near(sys.executable))} -m core"
    return shlex.quote(_near(program))


def _near(path: str) -> str:
    """``path`` relative to the working directory when it lies below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") or os.path.isabs(relative) else relative


def cmd_worker(args: argparse.Namespace) -> int:
    """One process of a distributed study: explicit stores, one BLAS thread by default."""
    args.workers = 1
    args.no_tracking = False
    return cmd_run(args)


def _masked(url: str) -> str:
    from core.study.urls import mask_url

    return mask_url(url)


def ui_command(
    *, host: str, port: int, backend_store_uri: str, artifacts: str | None
) -> list[str]:
    """The ``mlflow ui`` command line for the local store (no server is started here)."""
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        backend_store_uri,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if artifacts:
        command += ["--default-artifact-root", artifacts]
    return command


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_ui(args: argparse.Namespace) -> int:
    from core.study.errors import DEFAULT_TRACKING_URI
    from core.tracking import default_artifact_location

    if not is_loopback(args.host) and not args.allow_remote:
        return _fail(
            f"--host {args.host!r} is not a loopback address; the MLflow UI has no "
            "authentication, so binding elsewhere needs --allow-remote"
        )
    if not is_loopback(args.host):
        print(
            f"regstudy: warning: serving the MLflow UI on {args.host}: it has no "
            "authentication; anyone who can reach this port can read and delete runs",
            file=sys.stderr,
        )
    uri = args.tracking_uri or DEFAULT_TRACKING_URI
    problem = _ui_store_problem(uri, default=args.tracking_uri is None)
    if problem:
        return _fail(problem)
    command = ui_command(
        host=args.host,
        port=args.port,
        backend_store_uri=uri,
        artifacts=default_artifact_location(uri),
    )
    if args.dry_run:
        print(" ".join(command))
        return 0
    print(f"MLflow UI on http://{args.host}:{args.port} (Ctrl-C to stop)")
    return subprocess.call(command)


def _ui_store_problem(uri: str, *, default: bool) -> str | None:
    """Why ``uri`` cannot back the UI, or None: an existing MLflow store, in a SQLite file
    or a PostgreSQL database (an http URI is a server, not a store). Creates nothing:
    MLflow would make an empty store, and its directory, and serve nothing."""
    from core.study.errors import StorageError
    from core.study.urls import (
        check_driver,
        check_tracking_uri,
        probe_database,
        sqlite_tables,
        ui_database_problem,
    )

    allowed = "allowed: sqlite:///PATH of an existing MLflow store, or postgresql+DRIVER://..."
    if uri.startswith(("postgresql://", "postgresql+")):
        try:
            check_driver(uri, "--tracking-uri")
            return ui_database_problem(uri, probe_database(uri, "--tracking-uri", tables=True))
        except StorageError as error:
            return str(error)
    if not uri.startswith("sqlite:///") or uri == "sqlite:///":
        return f"--tracking-uri {uri!r} cannot back the UI; {allowed}"
    store = Path(uri.removeprefix("sqlite:///"))
    if not store.exists() and not uri.endswith("/"):
        if default:
            return (
                f"no runs yet: {store} does not exist; run a study here first "
                "(`regstudy run SPEC`, or `make study` in the project)"
            )
        return f"--tracking-uri {uri!r}: {str(store)!r} does not exist; run a study first"
    try:
        check_tracking_uri(uri)  # a directory, another kind of file
    except StorageError as error:
        return str(error)
    return ui_database_problem(uri, sqlite_tables(store) or set())


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from core.nn.gradcheck import TOLERANCE, run_all

    results = run_all(seed=args.seed)
    width = max(len(r.name) for r in results)
    for result in results:
        if args.verbose:
            print(
                f"{result.name:<{width}}  {result.error:.2e}  {'ok' if result.passed else 'FAIL'}"
            )
    worst = max(results, key=lambda r: r.error)
    failed = [r for r in results if not r.passed]
    print(
        f"{len(results)} gradient checks in float64; worst relative error "
        f"{worst.error:.2e} ({worst.name}); tolerance {TOLERANCE:.0e}"
    )
    if failed:
        print(f"FAILED: {', '.join(r.name for r in failed)}")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    from core.cli.report import add_report_command
    from core.study.errors import DEFAULT_STORAGE, DEFAULT_TRACKING_URI

    parser = Parser(
        prog="regstudy",
        description="Study how regularization changes generalization.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run or resume the study a spec describes")
    run.add_argument("spec", help="path to studies/NAME.toml")
    run.add_argument(
        "--trials",
        type=positive_int,
        default=None,
        help="total finished trials per study (default: the spec's n_trials)",
    )
    run.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL")
    run.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help="MLflow tracking URI")
    run.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    run.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes on this machine, sharing the storage (default 1; at most "
        f"{WORKERS_PER_CORE} per core)",
    )
    run.add_argument(
        "--blas-threads",
        type=positive_int,
        default=None,
        help="BLAS threads per process (default 1: a study's networks are small, and on "
        "them more threads cost more than they give)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=cmd_run)

    worker = sub.add_parser(
        "worker", help="join a distributed study: one process, shared storage and MLflow server"
    )
    worker.add_argument("spec", help="path to studies/NAME.toml (the same file on every worker)")
    worker.add_argument(
        "--storage",
        required=True,
        help="shared Optuna storage, e.g. postgresql+psycopg2://USER@HOST/DB",
    )
    worker.add_argument(
        "--tracking-uri",
        required=True,
        help="shared MLflow tracking server, e.g. http://HOST:5000",
    )
    worker.add_argument(
        "--trials",
        type=positive_int,
        default=None,
        help="total finished trials per study (default: the spec's n_trials)",
    )
    worker.add_argument(
        "--blas-threads",
        type=positive_int,
        default=1,
        help="BLAS threads of this worker (default 1)",
    )
    worker.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    worker.add_argument("--verbose", action="store_true", help="debug logging")
    worker.add_argument("--workers", nargs="?", action=_OneProcess, help=argparse.SUPPRESS)
    worker.set_defaults(func=cmd_worker)

    ui = sub.add_parser("ui", help="the MLflow UI over the local tracking store")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=_port, default=5000)
    ui.add_argument("--tracking-uri", default=None, help="backend store (default runs/mlflow.db)")
    ui.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (the UI has no authentication)",
    )
    ui.add_argument("--dry-run", action="store_true", help="print the command, start nothing")
    ui.set_defaults(func=cmd_ui, quiet=False, verbose=False)

    grad = sub.add_parser("gradcheck", help="finite-difference checks of every gradient")
    grad.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seed of the checks' data and dropout masks (default 0)",
    )
    grad.add_argument("--verbose", action="store_true", help="one line per check")
    grad.set_defaults(func=cmd_gradcheck, quiet=False)

    add_report_command(sub)
    return parser


class _OneProcess(argparse.Action):
    """``worker --workers N``: say what to do instead of argparse's "unrecognized"."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        given = f"{option_string} {values}" if values else option_string
        parser.error(
            f"{given}: a worker is one process; start `regstudy worker` "
            "once per process, or use `regstudy run SPEC --workers N` on one machine"
        )


WORKERS_PER_CORE = 4  # beyond this, workers only contend for the cores (and the memory)


def _usable_cores() -> int:
    """The cores this process may run on (its affinity, where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:
        return os.cpu_count() or 1


def _workers(text: str) -> int:
    value = positive_int(text)
    limit = WORKERS_PER_CORE * _usable_cores()
    if value > limit:
        raise argparse.ArgumentTypeError(
            f"must be at most {limit} ({WORKERS_PER_CORE} per core here); got {text!r}; "
            "for more, start `regstudy worker` on other machines"
        )
    return value


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number in 1..65535; got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "quiet", False), getattr(args, "verbose", False))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # No usage reports from MLflow (also for `regstudy ui`, whose server inherits this).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        return args.func(args)
    except _bad_input_errors() as error:
        return _fail(str(error))
    except TooManyFailures as error:
        print(f"regstudy: error: {error}", file=sys.stderr)
        return 1
    except MemoryError as error:
        # The trial that ran out is marked failed; a smaller model or batch is the remedy.
        print(
            f"regstudy: error: out of memory ({error}); use smaller [model] hidden layers "
            "or [train] batch_size",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt as interrupt:
        code = exit_code(interrupt)
        if args.func in (cmd_run, cmd_worker):
            print(f"{_after_echo()}regstudy: {_interrupted_message(code)}", file=sys.stderr)
        else:
            print(f"{_after_echo()}regstudy: {_STOPPED[code]}", file=sys.stderr)
        return code
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
