"""Helpers for the test suite and the benchmarks: a real ``mlflow server`` on loopback.

Not used by the study system itself. Kept in the package so tests and benchmarks share one
way to start, wait for and stop a server instead of three.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# Loopback needs no proxy; an HTTP(S)_PROXY in the environment must not catch it.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(RuntimeError):
    """The server exited or did not answer ``/health`` in time (its log is in the text)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(
    backend_store_uri: str,
    directory: Path,
    *,
    artifacts: str = "served",
    workers: int = 1,
    timeout: float = 120.0,
) -> Iterator[str]:
    """Run ``mlflow server`` on a free loopback port; yield its base URL; stop it (its whole
    process group) on exit.

    Args:
        backend_store_uri: The server's database.
        directory: Working directory; holds ``server.log`` and the artifacts.
        artifacts: ``served`` (the server stores artifacts under ``directory/artifacts``
            and clients upload through it) or ``direct`` (clients write to
            ``directory/mlartifacts`` themselves).
        workers: Server worker processes.
        timeout: Seconds to wait for ``/health``.

    Raises:
        ServerError: The server exited or did not answer in time.
    """
    port = free_port()
    if artifacts == "served":
        store = [
            "--artifacts-destination",
            (directory / "artifacts").as_uri(),
            "--serve-artifacts",
        ]
    else:
        store = ["--default-artifact-root", (directory / "mlartifacts").as_uri()]
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri]
    command += [*store, "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    log_path = directory / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            command,
            cwd=directory,
            env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(server, url, log_path, timeout)
            yield url
        finally:
            _stop(server)


def _wait_healthy(server: subprocess.Popen, url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise ServerError(f"mlflow server exited: {log_path.read_text()[-3000:]}")
        try:
            with NO_PROXY.open(f"{url}/health", timeout=5) as response:
                if response.read().strip() == b"OK":
                    return
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise ServerError(f"mlflow server did not answer /health within {timeout:.0f} s")
        time.sleep(0.3)


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=20)
