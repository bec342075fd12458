"""The printed result: the environment, then markdown tables of what each row measured."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench.cpu import NOISY_CORES, CpuUse
from bench.measurement import REPO, Measurement, Operation

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Environment:
    """What the numbers depend on besides the code: machine, versions, commit, other load."""

    cpu: str
    cores: int
    memory_gib: float
    system: str
    python: str
    libraries: str
    postgres: str
    load_average: str
    revision: str

    def header(self) -> list[str]:
        """The lines every suite's table opens with (markdown list items)."""
        return [
            f"- Machine: {self.cpu}, {self.cores} cores, {self.memory_gib:.1f} GiB RAM; "
            f"{self.system}",
            f"- Service: {self.revision}",
            f"- Python {self.python}; {self.libraries}",
            f"- PostgreSQL {self.postgres}",
            f"- Load average (1, 5, 15 min) at start: {self.load_average}; "
            f"at end: {load_average()}",
        ]

    @classmethod
    def detect(cls, postgres: str) -> Environment:
        return cls(
            cpu=_cpu_model(),
            cores=os.cpu_count() or 0,
            memory_gib=_memory_gib(),
            system=platform.platform(),
            python=platform.python_version(),
            libraries=", ".join(
                f"{name} {metadata.version(name)}"
                for name in ("grpcio", "protobuf", "SQLAlchemy", "asyncpg", "uvloop")
            ),
            postgres=postgres,
            load_average=load_average(),
            revision=_revision(),
        )


@dataclass(frozen=True, slots=True)
class RowResult:
    operation: Operation
    concurrency: int
    service: Measurement
    server_peak_rss_bytes: int
    server_exit_code: int | None
    server_cpu_seconds: float
    service_cpu: CpuUse  # while the load generator ran against the server
    raw: Measurement  # asyncpg, the one statement
    raw_cpu: CpuUse
    replay: Measurement  # asyncpg, the service's statements in its transaction
    replay_cpu: CpuUse

    def other_cores(self) -> tuple[float, float, float]:
        """Other work on the machine during the service, raw and replay runs."""
        return (
            self.service_cpu.other_cores(),
            self.raw_cpu.other_cores(),
            self.replay_cpu.other_cores(),
        )


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def render(env: Environment, rows: Sequence[RowResult], setup: str) -> str:
    lines = [
        *env.header(),
        f"- {setup}",
        "",
        "| operation | concurrency | req/s | p50 ms | p99 ms | server peak RSS MiB "
        "| raw asyncpg req/s | ratio |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {r.operation} | {r.concurrency} | {r.service.per_second:,.0f} "
        f"| {r.service.p50_ms:.2f} | {r.service.p99_ms:.2f} "
        f"| {r.server_peak_rss_bytes / MIB:.0f} | {r.raw.per_second:,.0f} "
        f"| {_ratio(r.service, r.raw)} |"
        for r in rows
    ]
    lines += [
        "",
        "Where the time goes: asyncpg replaying the service's own statements; CPU per call",
        "(server, load generator, PostgreSQL for the bench database; warm-up included); and",
        "cores used by other work on the machine during the service / raw / replay runs.",
        "",
        "| operation | concurrency | asyncpg replay req/s | replay p50 ms | service ÷ replay "
        "| server CPU ms/call | load gen CPU ms/call | PostgreSQL CPU ms/call "
        "| other work, cores |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {r.operation} | {r.concurrency} | {r.replay.per_second:,.0f} "
        f"| {r.replay.p50_ms:.2f} | {_ratio(r.service, r.replay)} "
        f"| {_per_call(r.server_cpu_seconds, r.service)} "
        f"| {_per_call(r.service.cpu_seconds, r.service)} "
        f"| {_per_call(r.service_cpu.postgres, r.service)} "
        f"| {' / '.join(f'{cores:.2f}' for cores in r.other_cores())} |"
        for r in rows
    ]
    lines += _problems(rows)
    return "\n".join(lines)


def _ratio(measured: Measurement, floor: Measurement) -> str:
    return f"{measured.per_second / floor.per_second:.2f}" if floor.per_second else "n/a"


def _per_call(cpu_seconds: float, measured: Measurement) -> str:
    return f"{cpu_seconds * 1000 / measured.calls:.3f}" if measured.calls else "n/a"


def _problems(rows: Sequence[RowResult]) -> list[str]:
    """Anything that makes a row less than clean is said under the tables, never dropped."""
    notes: list[str] = []
    for r in rows:
        for label, measured in (("service", r.service), ("asyncpg", r.raw), ("replay", r.replay)):
            if measured.errors:
                notes.append(
                    f"- {r.operation} x{r.concurrency} {label}: {measured.errors} failed calls, "
                    f"first: {measured.first_error}"
                )
        if max(r.other_cores()) > NOISY_CORES:
            notes.append(
                f"- {r.operation} x{r.concurrency}: other work used up to "
                f"{max(r.other_cores()):.2f} cores meanwhile; its numbers are low"
            )
        if r.server_exit_code != 0:
            notes.append(
                f"- {r.operation} x{r.concurrency}: the server exited {r.server_exit_code} "
                "on SIGTERM (expected 0)"
            )
    return ["", "Problems:", *notes] if notes else []


def _revision() -> str:
    """The commit measured, and whether the service's files differ from it."""
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        changed = _git("status", "--porcelain", "--", "service", "generated", "protos")
    except (OSError, subprocess.CalledProcessError):
        return f"{REPO} (not a git checkout)"
    return f"commit {commit}" + (
        " with uncommitted changes to service/, generated/ or protos/" if changed else ""
    )


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return 0.0
