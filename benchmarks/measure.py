"""Timing helpers shared by the sections: thread limits, interleaved repeats, medians."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from threadpoolctl import threadpool_info, threadpool_limits

T = TypeVar("T")


@dataclass
class Samples:
    """The repeated measurements of one configuration (seconds, or any other unit)."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(float(value))

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def summary(self) -> dict[str, Any]:
        """Median, spread and every value, for the JSON record."""
        if not self.values:
            return {"median": None, "min": None, "max": None, "values": []}
        return {
            "median": self.median,
            "min": min(self.values),
            "max": max(self.values),
            "values": self.values,
        }


def default_blas_threads() -> int:
    """Threads of the largest BLAS pool this process would use without a limit."""
    pools = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return max(pools, default=os.cpu_count() or 1)


@contextlib.contextmanager
def thread_limit(n_threads: int | None) -> Iterator[None]:
    """Limit the BLAS and OpenMP pools of this process (and PyTorch's intra-op pool, when
    PyTorch is imported) to ``n_threads``; None leaves every library at its default."""
    if n_threads is None:
        yield
        return
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=n_threads):
        if torch is not None:
            torch.set_num_threads(n_threads)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(previous)


def rotated(items: Sequence[T], shift: int) -> list[T]:
    """``items`` started at position ``shift`` (mod length): repeat ``r`` of an interleaved
    measurement runs the configurations in a different order, so a slow spell of the
    machine does not always land on the same one."""
    if not items:
        return []
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def interleave(
    configurations: Sequence[tuple[str, Callable[[int], dict[str, float]]]],
    repeats: int,
) -> dict[str, dict[str, Samples]]:
    """Run every configuration once per repeat, in rotating order, and collect its figures.

    Args:
        configurations: ``(key, run)`` pairs; ``run(repeat)`` returns named figures (for
            example seconds per epoch and test accuracy).
        repeats: Rounds over all configurations.

    Returns:
        ``{key: {figure: Samples}}``.
    """
    results: dict[str, dict[str, Samples]] = {key: {} for key, _ in configurations}
    for repeat in range(repeats):
        for key, run in rotated(configurations, repeat):
            for name, value in run(repeat).items():
                results[key].setdefault(name, Samples()).add(value)
    return results


def environment() -> dict[str, Any]:
    """Versions, cores and BLAS pools, stored with the results."""
    import numpy
    import sklearn

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "blas": [
            {key: pool.get(key) for key in ("internal_api", "version", "num_threads")}
            for pool in threadpool_info()
        ],
    }
    with contextlib.suppress(OSError):
        info["load_average"] = os.getloadavg()
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
    return info


class OtherLoad:
    """The CPU that processes other than this one and its waited-for children use over a
    span: the machine's busy time (Linux ``/proc/stat``) minus our own. Unlike the load
    average, it covers exactly the span, so it neither blames a process that has ended
    nor misses a short one."""

    def __init__(self) -> None:
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        import resource
        import time

        try:
            with open("/proc/stat") as stat:
                ticks = [int(word) for word in stat.readline().split()[1:8]]
        except (OSError, ValueError):
            return None
        # user, nice, system, irq, softirq; not idle, iowait or steal
        busy = (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / os.sysconf("SC_CLK_TCK")
        own = sum(
            usage.ru_utime + usage.ru_stime
            for usage in (
                resource.getrusage(resource.RUSAGE_SELF),
                resource.getrusage(resource.RUSAGE_CHILDREN),
            )
        )
        return busy, own, time.monotonic()

    def cores(self) -> float | None:
        """Cores the other processes kept busy, on average, since the span began (None
        where ``/proc/stat`` cannot be read)."""
        end = self._sample()
        if self._start is None or end is None or end[2] <= self._start[2]:
            return None
        busy, own, elapsed = (b - a for a, b in zip(self._start, end, strict=True))
        return max(0.0, busy - own) / elapsed
