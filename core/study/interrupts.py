"""Graceful interrupts: Ctrl-C and SIGTERM stop a study at a safe point.

A signal that raises wherever it lands can cut a storage write in half (an interrupted
SQLite transaction left the database locked for a minute, then the worker crashed). While
trials run, the handlers here only record the signal; the trial loop and the per-epoch
callback call ``check()``, which raises there, between writes. A second Ctrl-C raises at
once, for a user who really wants out; a repeated SIGTERM does not (a pool's workers get
one from the group and one from their parent, and both mean the same stop). A signal the
process was started ignoring stays ignored: the workers of a pool leave Ctrl-C to their
parent.
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


def raise_terminated_once(signum, frame) -> None:
    """``raise_terminated`` for a pool's worker, which may get SIGTERM twice (from its
    group and from its parent): once this process has begun to stop, by this handler or
    inside ``graceful``, a later SIGTERM would only cut the clean-up short, so it is
    dropped."""
    global _stopping
    if _stopping:
        return
    _stopping = True
    raise_terminated(signum, frame)


_stopping = False  # a signal has begun to stop this process (see raise_terminated_once)


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
    global _stopping
    _stopping = True
    if _requested and signum == signal.SIGINT:
        # The second Ctrl-C: stop waiting for a safe point.
        _requested.clear()
        raise KeyboardInterrupt
    if not _requested:
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
    previous = {
        sig: signal.signal(sig, _record)
        for sig in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield
        check()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requested.clear()
