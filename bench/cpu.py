"""CPU accounting per phase: the bench's, PostgreSQL's for the bench database, everyone else's."""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import psutil  # type: ignore[import-untyped]

# Above this many cores of other work during a phase, the report says its numbers are low.
NOISY_CORES = 0.2
# Processes that exit mid-phase (a baseline's pool closing, a test run) lose at most this much.
SAMPLE_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class CpuUse:
    wall: float
    bench: float  # this process plus its children that exited meanwhile (load processes)
    postgres: float  # backends of the bench database plus PostgreSQL's own processes
    other: float  # every other process on the machine, other databases' backends included

    def other_cores(self) -> float:
        return self.other / self.wall if self.wall else 0.0


class CpuWindow:
    """`with CpuWindow(database) as window:` ... then `window.use`."""

    def __init__(self, database: str) -> None:
        self._sampler = _ProcessSampler(database)
        self._started = (0.0, 0.0)
        self.use = CpuUse(0.0, 0.0, 0.0, 0.0)

    def __enter__(self) -> Self:
        self._sampler.start()
        self._started = (time.monotonic(), _bench_cpu())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        wall, bench = time.monotonic() - self._started[0], _bench_cpu() - self._started[1]
        self._sampler.stop()
        self.use = CpuUse(
            wall=wall, bench=bench, postgres=self._sampler.postgres, other=self._sampler.other
        )


class _ProcessSampler(threading.Thread):
    """Polls every process's CPU time, so work of processes that exit mid-phase still counts.

    Per-process times on both sides: the machine-wide counters of /proc/stat do not add up
    with them (softirq time is in both), so "machine minus ours" would mislead.
    """

    def __init__(self, database: str) -> None:
        super().__init__(name="cpu-sampler", daemon=True)
        self._database = database
        self._stopped = threading.Event()
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._kind: dict[int, str] = {}

    @property
    def postgres(self) -> float:
        return self._total("postgres")

    @property
    def other(self) -> float:
        return self._total("other")

    def run(self) -> None:
        self._sample(initial=True)
        while not self._stopped.wait(SAMPLE_SECONDS):
            self._sample(initial=False)
        self._sample(initial=False)

    def stop(self) -> None:
        self._stopped.set()
        self.join()

    def _total(self, kind: str) -> float:
        return sum(self._last[pid] - self._first[pid] for pid, k in self._kind.items() if k == kind)

    def _sample(self, initial: bool) -> None:
        seen = {}
        parents: dict[int, int] = {}
        for process in psutil.process_iter(["name", "ppid", "cpu_times"]):
            times = process.info["cpu_times"]
            if times is None:
                continue
            seen[process.pid] = (process, float(times.user + times.system))
            parents[process.pid] = process.info["ppid"]
        ours = _descendants(os.getpid(), parents)
        for pid, (process, cpu) in seen.items():
            if pid not in self._kind:
                self._kind[pid] = self._classify(process, ours)
            self._first.setdefault(pid, cpu if initial else 0.0)
            self._last[pid] = cpu

    def _classify(self, process: psutil.Process, ours: set[int]) -> str:
        if process.pid in ours:
            return "bench"  # counted exactly, on exit, through RUSAGE_CHILDREN
        if process.info["name"] != "postgres":
            return "other"
        try:
            # "postgres: 15/main: user database host(port) state"; PostgreSQL's own
            # processes (walwriter, checkpointer, ...) name no database.
            title = " ".join(process.cmdline())
        except psutil.Error:
            return "other"
        return "postgres" if f" {self._database} " in title or "(" not in title else "other"


def _descendants(root: int, parents: dict[int, int]) -> set[int]:
    found = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def wait_idle(limit_seconds: float, idle_below: float = 0.15) -> float:
    """Waits, up to `limit_seconds`, for a second in which the machine is nearly idle
    (a shared machine); returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit_seconds:
        if psutil.cpu_percent(interval=1.0) / 100 < idle_below:
            break
    return time.monotonic() - started


def _bench_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process and its children so far."""
    root = psutil.Process(pid)
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        times = process.cpu_times()
        total += float(times.user + times.system)
    return total
