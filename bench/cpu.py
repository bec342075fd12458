"""CPU accounting per phase: ours, PostgreSQL's, and everything else's on the machine."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped]

# Above this many cores of other work during a phase, the report says the numbers are low.
NOISY_CORES = 0.2


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    wall: float
    machine_busy: float  # every CPU's non-idle time
    bench: float  # this process plus its children that have exited (load processes)
    postgres: float  # every PostgreSQL process, other databases' too


@dataclass(frozen=True, slots=True)
class CpuUse:
    wall: float
    machine_busy: float
    bench: float
    postgres: float

    def other_cores(self, live_seconds: float = 0.0) -> float:
        """Cores used by anything else: machine minus bench, PostgreSQL and `live_seconds`
        (children still running at the end, like the server). Approximate: work of
        processes that exited mid-phase counts as other."""
        other = self.machine_busy - self.bench - self.postgres - live_seconds
        return max(0.0, other / self.wall) if self.wall else 0.0


def snapshot() -> CpuSnapshot:
    times = psutil.cpu_times()
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSnapshot(
        wall=time.monotonic(),
        machine_busy=float(times.user + times.nice + times.system + times.irq + times.softirq),
        bench=own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime,
        postgres=postgres_cpu_seconds(),
    )


def since(start: CpuSnapshot) -> CpuUse:
    end = snapshot()
    return CpuUse(
        wall=end.wall - start.wall,
        machine_busy=end.machine_busy - start.machine_busy,
        bench=end.bench - start.bench,
        postgres=end.postgres - start.postgres,
    )


def postgres_cpu_seconds() -> float:
    """User + system CPU of every PostgreSQL process on this machine (other users' too)."""
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        times = process.info["cpu_times"]
        if process.info["name"] == "postgres" and times is not None:
            total += float(times.user + times.system)
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process and its children so far."""
    root = psutil.Process(pid)
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        times = process.cpu_times()
        total += float(times.user + times.system)
    return total
