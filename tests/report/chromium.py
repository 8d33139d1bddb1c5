"""Headless Chromium driven over the DevTools protocol through a pipe (no network port).

Chromium started with ``--remote-debugging-pipe`` reads protocol messages from file
descriptor 3 and writes them to descriptor 4, each a JSON object ended by a NUL byte. A
``bash -c 'exec ...'`` wrapper puts our pipe ends on those descriptors, so nothing is
listening on any socket and no ``preexec_fn`` runs in the forked child.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> str | None:
    """The Chromium binary: ``REGSTUDY_CHROMIUM``, else ``chromium`` on the PATH."""
    return os.environ.get("REGSTUDY_CHROMIUM") or shutil.which("chromium")


class ProtocolError(RuntimeError):
    """Chromium answered a command with an error, or did not answer in time."""


class Chromium:
    """One headless browser with one page session.

    Args:
        binary: Path of the Chromium executable.
        profile: A fresh, empty directory for ``--user-data-dir``.
    """

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        # Above 9, so the redirections onto 3 and 4 below never overwrite one of them.
        to_browser_read, from_browser_write = _high(to_browser_read), _high(from_browser_write)
        command = (
            f'exec "$0" "$@" 3<&{to_browser_read} 4>&{from_browser_write} '
            f"{to_browser_read}<&- {from_browser_write}>&-"
        )
        self.process = subprocess.Popen(
            [
                "bash",
                "-c",
                command,
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            pass_fds=(to_browser_read, from_browser_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._inbox: queue.Queue[dict | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session: str | None = None

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._from_browser, "rb", buffering=0) as stream:
            while chunk := stream.read(65536):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for message in messages:
                    self._inbox.put(json.loads(message))
        self._inbox.put(None)

    def _pump(self, deadline: float) -> None:
        message = self._inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        if message is None:
            raise ProtocolError("Chromium closed the protocol pipe")
        if "id" in message:
            self._replies[message["id"]] = message
        else:
            self.events.append(message)

    def send(self, method: str, params: dict | None = None, *, timeout: float = 30) -> dict:
        """Send a command (to the page session once attached) and wait for its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session is not None and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while self._next_id not in self._replies:
            try:
                self._pump(deadline)
            except queue.Empty:
                raise ProtocolError(f"no answer to {method} within {timeout} s") from None
        reply = self._replies.pop(self._next_id)
        if "error" in reply:
            raise ProtocolError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for(self, method: str, *, timeout: float = 30) -> dict:
        """Wait for the first event named ``method`` (seen before or after this call)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["method"] == method:
                    return event
            try:
                self._pump(deadline)
            except queue.Empty:
                raise ProtocolError(f"no {method} event within {timeout} s") from None

    def attach_page(self) -> None:
        targets = self.send("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.send(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
        )["sessionId"]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        with contextlib.suppress(OSError):
            os.close(self._to_browser)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()  # the process this helper started, by its own handle
            self.process.wait(timeout=15)


def _high(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def open_report(binary: str, profile: Path, url: str, *, width: int = 1280) -> dict[str, Any]:
    """Load ``url`` and return console errors, requested URLs, image sizes and a screenshot.

    Returns:
        ``errors`` (console errors, uncaught exceptions, error log entries), ``requests``
        (every URL the page asked for), ``images`` (``[decoded, naturalWidth,
        naturalHeight]`` per ``<img>``) and ``png`` (full-page screenshot bytes).
    """
    browser = Chromium(binary, profile)
    try:
        browser.attach_page()
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable")
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        browser.send("Page.navigate", {"url": url})
        browser.wait_for("Page.loadEventFired")
        images = browser.send(
            "Runtime.evaluate",
            {
                "expression": (
                    "Promise.all(Array.from(document.images).map(img => img.decode().then("
                    "() => [true, img.naturalWidth, img.naturalHeight],"
                    " () => [false, img.naturalWidth, img.naturalHeight])))"
                ),
                "awaitPromise": True,
                "returnByValue": True,
            },
        )["result"]["value"]
        size = browser.send("Page.getLayoutMetrics")["cssContentSize"]
        shot = browser.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1},
            },
            timeout=60,
        )
    finally:
        browser.close()
    return {
        "errors": console_errors(browser.events),
        "requests": [
            e["params"]["request"]["url"]
            for e in browser.events
            if e["method"] == "Network.requestWillBeSent"
        ],
        "images": images,
        "png": base64.b64decode(shot["data"]),
    }


def console_errors(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions and error-level log entries, as text."""
    errors = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(json.dumps(params.get("args")))
        elif method == "Runtime.exceptionThrown":
            errors.append(json.dumps(params.get("exceptionDetails")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", ""))
    return errors
