"""The signal rules of ``core.study.interrupts``, in this process: inside ``graceful`` a
signal waits for ``check()``; a second Ctrl-C raises at once, a second SIGTERM does not; a
signal the process ignores stays ignored; a pool worker's SIGTERM handler fires once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from core.study import interrupts
from core.study.interrupts import Terminated


def deliver(sig: int) -> None:
    """Send ``sig`` to this process and give the interpreter a moment to run its handler."""
    os.kill(os.getpid(), sig)
    time.sleep(0.01)


@pytest.fixture(autouse=True)
def restore_handlers(monkeypatch):
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(interrupts, "_stopping", False, raising=False)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_signal_inside_graceful_waits_for_check():
    with pytest.raises(Terminated), interrupts.graceful():
        deliver(signal.SIGTERM)
        assert interrupts.requested()
        interrupts.check()
        pytest.fail("check() did not raise")


def test_a_second_sigterm_is_the_same_stop_and_does_not_raise_at_once():
    # A pool worker gets one SIGTERM from its process group and one from its parent.
    reached_check = False
    with pytest.raises(Terminated), interrupts.graceful():
        deliver(signal.SIGTERM)
        deliver(signal.SIGTERM)  # raised Terminated here, mid-write, before the fix
        reached_check = True
        interrupts.check()
    assert reached_check
    assert not interrupts.requested()


def test_a_second_ctrl_c_still_raises_at_once():
    with pytest.raises(KeyboardInterrupt), interrupts.graceful():
        deliver(signal.SIGINT)
        deliver(signal.SIGINT)
        pytest.fail("the second Ctrl-C did not raise")


def test_a_signal_the_process_ignores_stays_ignored_inside_graceful():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupts.graceful():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        deliver(signal.SIGINT)
        assert not interrupts.requested()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_a_workers_sigterm_handler_raises_once_then_drops_repeats():
    signal.signal(signal.SIGTERM, interrupts.raise_terminated_once)
    with pytest.raises(Terminated):
        deliver(signal.SIGTERM)
    deliver(signal.SIGTERM)  # the parent's copy, arriving during the clean-up


def test_a_worker_stopped_inside_graceful_drops_a_sigterm_after_it():
    # The loop's handlers are gone while the worker closes its run; its own is back.
    signal.signal(signal.SIGTERM, interrupts.raise_terminated_once)
    with pytest.raises(Terminated), interrupts.graceful():
        deliver(signal.SIGTERM)
        interrupts.check()
    assert signal.getsignal(signal.SIGTERM) is interrupts.raise_terminated_once
    deliver(signal.SIGTERM)
