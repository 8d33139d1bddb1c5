"""Graceful interrupts: Ctrl-C and SIGTERM stop a study at a safe point.

A signal that raises wherever it lands can cut a storage write in half (an interrupted
SQLite transaction left the database locked for a minute, then the worker crashed). While
trials run, the handlers here only record the signal; the trial loop and the per-epoch
callback call ``check()``, which raises there, between writes. A second signal raises at
once, for a user who really wants out.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the running trial is marked and its run closed."""


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """The exit code of a process stopped by ``interrupt``: 143 for SIGTERM, else 130."""
    return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


def raise_terminated(signum, frame) -> None:
    """A SIGTERM handler that raises ``Terminated`` right away (outside trial loops)."""
    raise Terminated(f"received signal {signum}")


_requested: list[int] = []


def requested() -> bool:
    return bool(_requested)


def check() -> None:
    """Raise the interrupt a signal asked for, if any (call between storage writes)."""
    if not _requested:
        return
    signum = _requested[0]
    _requested.clear()
    if signum == signal.SIGTERM:
        raise Terminated(f"received signal {signum}")
    raise KeyboardInterrupt


def _record(signum, frame) -> None:
    if _requested:
        # The second signal: stop waiting for a safe point.
        _requested.clear()
        if signum == signal.SIGTERM:
            raise Terminated(f"received signal {signum} twice")
        raise KeyboardInterrupt
    _requested.append(signum)


@contextlib.contextmanager
def graceful() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM are recorded for ``check()`` to raise.

    Handlers can only be installed from the main thread; elsewhere the block changes
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()
    previous = {sig: signal.signal(sig, _record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
        check()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requested.clear()
