"""The bench's note on a busy machine counts other processes' CPU over exactly the span of
a section: a busy neighbour is seen, the bench's own work is not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from benchmarks.measure import OtherLoad

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/stat (Linux)"
)


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def other_cores(during) -> float:
    """Other processes' cores over a span in which ``during()`` runs."""
    span = OtherLoad()
    during()
    others = span.cores()
    assert others is not None
    return others


def idle() -> float:
    """The background: other processes' cores while this one sleeps for a second."""
    return other_cores(lambda: time.sleep(1.0))


# Each test compares with the background just before it, so a machine that is busy for
# other reasons shifts both figures alike.


def test_our_own_work_is_not_counted_as_other_load():
    background = idle()
    assert other_cores(lambda: spin(1.0)) - background < 0.4  # counted, it adds ~1.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far (Linux /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_busy_neighbour_during_the_span_is_counted():
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # its start-up is over
        before, started = cpu_seconds(neighbour.pid), time.monotonic()
        # Read while it runs: it is not yet a waited-for child of ours.
        others = other_cores(lambda: time.sleep(1.0))
        used = (cpu_seconds(neighbour.pid) - before) / (time.monotonic() - started)
    finally:
        neighbour.kill()
        neighbour.wait()
    # The neighbour's own clock, read apart: on a busy machine it gets less than a core,
    # and whatever it got is part of what the span saw.
    assert used > 0.2
    assert others >= used - 0.15


def test_a_neighbour_that_ended_before_the_span_is_not_counted():
    # The one-minute load average still showed such a process for a minute after.
    background = idle()
    neighbour = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.monotonic() + 1\nwhile time.monotonic() < end: pass",
        ]
    )
    neighbour.wait()
    assert other_cores(lambda: time.sleep(1.0)) - background < 0.4


def test_a_section_with_a_busy_neighbour_gets_one_note_naming_it(capsys):
    from benchmarks import cli

    notes: list[str] = []
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        cli._progress("section 4: studies/digits.toml x20, four ways", notes)
        time.sleep(1.0)
        cli._progress("section 5: 40 trials with 1 and 2 workers", notes)
    finally:
        neighbour.kill()
        neighbour.wait()
    cli._span.clear()
    assert len(notes) == 1, notes
    assert "during section 4:" in notes[0] and "cores busy" in notes[0]
    assert "section 4: studies" in capsys.readouterr().out
