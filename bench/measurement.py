"""The closed loop every load process runs, and the numbers it hands back as JSON."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class BenchError(Exception):
    """The bench cannot go on; the message says why, for the person who ran it."""


class Operation(StrEnum):
    GET_USER = "GetUser"
    CREATE_USER = "CreateUser"


@dataclass(frozen=True, slots=True)
class LoadShape:
    operation: Operation
    concurrency: int
    warmup: float
    duration: float

    def flags(self) -> list[str]:
        return [
            f"--operation={self.operation}",
            f"--concurrency={self.concurrency}",
            f"--warmup={self.warmup}",
            f"--duration={self.duration}",
        ]


@dataclass(frozen=True, slots=True)
class Measurement:
    """One closed-loop run: latencies of the calls that completed inside the window."""

    requests: int  # completed without error inside the measured window
    calls: int  # every call started, warm-up included (to spread CPU time over)
    errors: int
    first_error: str
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float  # the load process's own CPU time, warm-up included

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> Measurement:
        fields = json.loads(raw)
        return cls(
            requests=int(fields["requests"]),
            calls=int(fields["calls"]),
            errors=int(fields["errors"]),
            first_error=str(fields["first_error"]),
            seconds=float(fields["seconds"]),
            p50_ms=float(fields["p50_ms"]),
            p99_ms=float(fields["p99_ms"]),
            cpu_seconds=float(fields["cpu_seconds"]),
        )


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = math.ceil(fraction * len(ordered))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


async def run_closed_loop(call: Callable[[int], Awaitable[None]], shape: LoadShape) -> Measurement:
    """`concurrency` workers each await `call(worker)` back to back until the window ends.

    A call counts if it completes inside the window (after the warm-up), so
    requests/s is completions per second, not biased by calls cut at the edges.
    """
    latencies: list[float] = []
    calls = errors = 0
    first_error = ""
    cpu_started = time.process_time()
    started = time.perf_counter()
    window_opens = started + shape.warmup
    window_closes = window_opens + shape.duration

    async def worker(index: int) -> None:
        nonlocal calls, errors, first_error
        while (began := time.perf_counter()) < window_closes:
            calls += 1
            try:
                await call(index)
            except Exception as error:  # counted and reported, never hidden
                errors += 1
                first_error = first_error or f"{type(error).__name__}: {error}"[:300]
                continue
            ended = time.perf_counter()
            if window_opens <= ended <= window_closes:
                latencies.append(ended - began)

    await asyncio.gather(*(worker(i) for i in range(shape.concurrency)))
    latencies.sort()
    return Measurement(
        requests=len(latencies),
        calls=calls,
        errors=errors,
        first_error=first_error,
        seconds=shape.duration,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        cpu_seconds=time.process_time() - cpu_started,
    )


async def measure_in_child(module: str, flags: Sequence[str]) -> Measurement:
    """Runs `python -m <module> <flags>` (a load process) and reads its one JSON line."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *flags, cwd=REPO, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise BenchError(f"{module} {' '.join(flags)} exited {child.returncode}")
    return Measurement.from_json(out.decode().strip().splitlines()[-1])


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop when installed, as the service itself runs."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def say(message: str) -> None:
    """Progress for the person running the bench, on stderr (the tables go to stdout)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)
