"""The health probe of an http tracking server sends the credentials MLflow's client would
send, and says in one line whether the server is absent or answered with an error."""

from __future__ import annotations

import base64
import http.server
import threading

import pytest

from core.study.errors import StorageError
from core.study.urls import probe_tracking_server


class _Guarded(http.server.BaseHTTPRequestHandler):
    """/health answers 200 to basic auth alice:s3cret/word or bearer t0ken, else 401."""

    accepted = {
        "Basic " + base64.b64encode(b"alice:s3cret/word").decode(),
        "Bearer t0ken",
    }
    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        header = self.headers.get("Authorization")
        self.seen.append(header)
        ok = self.path == "/health" and header in self.accepted
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b"OK" if ok else b"no")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Guarded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Guarded.seen.clear()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_credentials_in_the_environment(monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_credentials_in_the_uri_are_sent_as_basic_auth(server_port):
    # The password holds a "/", percent-encoded in the URI as a user would write it.
    probe_tracking_server(f"http://alice:s3cret%2Fword@127.0.0.1:{server_port}")
    assert _Guarded.seen[-1].startswith("Basic ")


def test_credentials_from_mlflows_environment_variables_are_sent(server_port, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret/word")
    probe_tracking_server(f"http://127.0.0.1:{server_port}")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0ken")
    probe_tracking_server(f"http://127.0.0.1:{server_port}/")
    assert _Guarded.seen[-1] == "Bearer t0ken"


def test_a_refusal_is_one_line_with_the_status_and_the_password_masked(server_port):
    with pytest.raises(StorageError) as raised:
        probe_tracking_server(f"http://alice:wrong@127.0.0.1:{server_port}")
    message = str(raised.value)
    assert "\n" not in message
    assert "401" in message and "credentials" in message
    assert "wrong" not in message and "alice:***@" in message


def test_a_port_nobody_listens_on_says_the_server_does_not_answer():
    with pytest.raises(StorageError, match="does not answer"):
        probe_tracking_server("http://127.0.0.1:1", timeout=2)
