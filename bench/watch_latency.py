"""Watch suite, part 1: change-to-delivery latency with 1, 100 and 1,000 watchers.

Per row a fresh server; the watchers (bench/watch_client.py) spread over a few client
processes, each one event loop over several connections, so no single Python process is
the whole client; then a writer process (bench/paced_writer.py) sends CreateUser at a
steady rate, open loop. Changes committed inside the measured window (after the
writer's warm-up) count for latency; every change the writer made must reach every
watcher. A row that cannot keep up is reported as measured: what was delivered, how the
latency grew from the window's first half to its second, how long the last watcher
took to catch up (up to --watch-drain seconds).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from bench.cpu import CpuWindow, wait_idle
from bench.histogram import Histogram
from bench.measurement import REPO, BenchError, say
from bench.paced_writer import WriterResult
from bench.report import MIB
from bench.server_process import ServerProcess
from bench.watch_client import WatchersResult

WATCHERS_PER_CONNECTION = 50
# Between the go sent to the clients and the writer's first call: the writer process
# needs this to start and connect.
START_DELAY_SECONDS = 2.0
EXIT_GRACE_SECONDS = 60.0
P99_TARGET_MS = 100.0
TARGET_WATCHERS = 1_000


@dataclass(frozen=True, slots=True)
class LatencyArgs:
    watchers: Sequence[int]
    rate: float  # CreateUser calls a second
    clients: int  # client processes at most
    drain: float  # seconds the clients wait, after the last write, for every change
    warmup: float
    duration: float
    wait_idle: float


@dataclass(frozen=True, slots=True)
class LatencyRow:
    watchers: int
    processes: int
    connections: int
    writer: WriterResult
    clients: Sequence[WatchersResult]
    window_seconds: float
    server_cpu_seconds: float  # inside the window
    server_peak_rss_bytes: int  # over the whole row, watchers connecting included
    postgres_cores: float
    other_cores: float
    # Seconds from the writer's last answer until the last watcher had every change;
    # None: not within --watch-drain.
    caught_up_after: float | None

    def latencies(self) -> Histogram:
        return Histogram.merged(self.halves())

    def halves(self) -> tuple[Histogram, Histogram]:
        return (
            Histogram.merged(Histogram.from_json(c.first_half) for c in self.clients),
            Histogram.merged(Histogram.from_json(c.second_half) for c in self.clients),
        )

    def fewest_received(self) -> int:
        return min(c.min_received for c in self.clients)

    def most_received(self) -> int:
        return max(c.max_received for c in self.clients)

    def complete(self) -> int:
        return sum(c.complete for c in self.clients)

    def all_delivered(self) -> bool:
        expected = self.writer.ok
        return self.fewest_received() == expected and self.most_received() == expected

    def deliveries_per_second(self) -> float:
        return sum(c.window_deliveries for c in self.clients) / self.window_seconds

    def needed_per_second(self) -> float:
        return self.watchers * self.writer.per_second

    def server_cores(self) -> float:
        return self.server_cpu_seconds / self.window_seconds

    def client_cores(self) -> float:
        return sum(c.window_cpu_seconds for c in self.clients) / self.window_seconds


async def measure(url: str, database: str, args: LatencyArgs) -> list[LatencyRow]:
    return [await _row(url, database, watchers, args) for watchers in args.watchers]


def _shares(watchers: int, processes: int) -> list[int]:
    base, extra = divmod(watchers, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


async def _row(url: str, database: str, watchers: int, args: LatencyArgs) -> LatencyRow:
    shares = _shares(watchers, min(args.clients, watchers))
    channels = [math.ceil(share / WATCHERS_PER_CONNECTION) for share in shares]
    say(
        f"latency: {watchers:,} watchers in {len(shares)} client processes, "
        f"CreateUser at {args.rate:g}/s"
    )
    started: list[asyncio.subprocess.Process] = []  # killed if the row fails midway
    async with ServerProcess(url) as server:
        try:
            for share, connections in zip(shares, channels, strict=True):
                started.append(await _start_client(server.target, share, connections))
            clients = list(started)
            for client in clients:
                await _expect_ready(client)
            if args.wait_idle > 0:
                await asyncio.to_thread(wait_idle, args.wait_idle)
            start_at = time.time() + START_DELAY_SECONDS
            opens = start_at + args.warmup
            closes = opens + args.duration
            for client in clients:
                await _send(client, {"opens": opens, "closes": closes})
            writer = await _start_writer(server.target, start_at, args)
            started.append(writer)
            await _sleep_until(opens)
            with CpuWindow(database) as window:
                cpu = server.cpu_seconds()
                await _sleep_until(closes)
                cpu = server.cpu_seconds() - cpu
            written = await _finish_writer(writer, args)
            for client in clients:
                await _send(client, {"expected": written.ok, "drain": args.drain})
            results = [await _finish_client(client, args) for client in clients]
        finally:
            for process in started:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    finished = [r.completed_at for r in results]
    caught_up = (
        max(0.0, max(f for f in finished if f is not None) - written.finished_at)
        if all(f is not None for f in finished)
        else None
    )
    return LatencyRow(
        watchers=watchers,
        processes=len(shares),
        connections=sum(channels),
        writer=written,
        clients=results,
        window_seconds=window.use.wall,
        server_cpu_seconds=cpu,
        server_peak_rss_bytes=server.peak_rss_bytes,
        postgres_cores=window.use.postgres / window.use.wall,
        other_cores=window.use.other_cores(),
        caught_up_after=caught_up,
    )


async def _start_client(target: str, watchers: int, channels: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.watch_client",
        "watchers",
        f"--target={target}",
        f"--watchers={watchers}",
        f"--channels={channels}",
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def _expect_ready(client: asyncio.subprocess.Process) -> None:
    assert client.stdout is not None
    try:
        line = await asyncio.wait_for(client.stdout.readline(), 180)
    except TimeoutError:
        raise BenchError("a watch client did not have its watches on within 180 s") from None
    if line.strip() != b"ready":
        raise BenchError(
            f"a watch client said {line!r} instead of ready (exit {client.returncode})"
        )


async def _send(client: asyncio.subprocess.Process, message: dict[str, float]) -> None:
    assert client.stdin is not None
    client.stdin.write(json.dumps(message).encode() + b"\n")
    await client.stdin.drain()


async def _finish_client(client: asyncio.subprocess.Process, args: LatencyArgs) -> WatchersResult:
    assert client.stdout is not None
    try:
        out = await asyncio.wait_for(client.stdout.read(), args.drain + EXIT_GRACE_SECONDS)
    except TimeoutError:
        raise BenchError("a watch client did not report after its drain time") from None
    if await client.wait() != 0:
        raise BenchError(f"a watch client exited {client.returncode}")
    return WatchersResult.from_json(out.decode().strip().splitlines()[-1])


async def _start_writer(
    target: str, start_at: float, args: LatencyArgs
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.paced_writer",
        f"--target={target}",
        f"--rate={args.rate}",
        f"--start-at={start_at}",
        f"--seconds={args.warmup + args.duration}",
        f"--tag={uuid.uuid4().hex[:8]}",
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )


async def _finish_writer(writer: asyncio.subprocess.Process, args: LatencyArgs) -> WriterResult:
    out, _ = await asyncio.wait_for(writer.communicate(), EXIT_GRACE_SECONDS)
    if writer.returncode != 0:
        raise BenchError(f"the paced writer exited {writer.returncode}")
    return WriterResult.from_json(out.decode().strip().splitlines()[-1])


async def _sleep_until(wall_clock: float) -> None:
    await asyncio.sleep(max(0.0, wall_clock - time.time()))


def render(rows: Sequence[LatencyRow], args: LatencyArgs) -> list[str]:
    lines = [
        f"Change-to-delivery latency: CreateUser at {args.rate:g}/s, open loop (bench/"
        f"paced_writer.py), {args.warmup:g} s warm-up then {args.duration:g} s measured; "
        "latency = a watcher's receive time minus the change's commit_time, changes committed "
        f"inside the window; a fresh server per row; watchers from now, {WATCHERS_PER_CONNECTION}"
        " a connection at most, in bench/watch_client.py processes; cores are over the window.",
        "",
        "| watchers | client processes / connections | writes/s | write p99 ms | p50 ms "
        "| p99 ms | max ms | p50 1st half → 2nd half ms | changes delivered / expected "
        "(fewest, most) | watchers with all | all had all, s after the last write returned "
        "| deliveries/s (needed) | server cores | server peak RSS MiB | PostgreSQL cores "
        "| client cores | target p99 |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in rows:
        whole = r.latencies()
        first, second = r.halves()
        caught_up = (
            f"{r.caught_up_after:.2f}"
            if r.caught_up_after is not None
            else f"not within {args.drain:g}"
        )
        lines.append(
            f"| {r.watchers:,} | {r.processes} / {r.connections} | {r.writer.per_second:,.0f} "
            f"| {r.writer.p99_ms:.1f} | {whole.percentile_ms(0.5):.1f} "
            f"| {whole.percentile_ms(0.99):.1f} | {whole.max_ms:.0f} "
            f"| {first.percentile_ms(0.5):.1f} → {second.percentile_ms(0.5):.1f} "
            f"| {r.fewest_received():,}, {r.most_received():,} / {r.writer.ok:,} "
            f"| {r.complete():,} | {caught_up} "
            f"| {r.deliveries_per_second():,.0f} ({r.needed_per_second():,.0f}) "
            f"| {r.server_cores():.2f} | {r.server_peak_rss_bytes / MIB:.0f} "
            f"| {r.postgres_cores:.2f} | {r.client_cores():.2f} "
            f"| {_target_cell(r)} |"
        )
    return lines


def _target_cell(row: LatencyRow) -> str:
    if row.watchers != TARGET_WATCHERS:
        return "-"
    return f"≤ {P99_TARGET_MS:g} ms: {'ok' if target_met(row) else 'MISS'}"


def target_met(row: LatencyRow) -> bool:
    return row.all_delivered() and row.latencies().percentile_ms(0.99) <= P99_TARGET_MS


def verdict(rows: Sequence[LatencyRow]) -> str:
    """The target line: p99 at 1,000 watchers (or the most measured, said so)."""
    if not rows:
        return "- Latency: not measured"
    row = next((r for r in rows if r.watchers == TARGET_WATCHERS), max(rows, key=_watchers))
    p99 = row.latencies().percentile_ms(0.99)
    # Met or missed only where the issue sets it: at 1,000 watchers.
    judged = "ok" if target_met(row) else "MISS"
    if row.watchers != TARGET_WATCHERS:
        judged = f"not judged, {TARGET_WATCHERS:,} watchers were not measured in this run"
    line = (
        f"- Change-to-delivery p99 at {row.watchers:,} watchers: {p99:.1f} ms "
        f"(target ≤ {P99_TARGET_MS:g} ms at {TARGET_WATCHERS:,}): {judged}"
    )
    if not row.all_delivered():
        line += (
            f"; not every watcher got every change (fewest {row.fewest_received():,} of "
            f"{row.writer.ok:,}), so the p99 is of what was delivered"
        )
    return line


def _watchers(row: LatencyRow) -> int:
    return row.watchers


def problems(rows: Sequence[LatencyRow]) -> list[str]:
    notes = []
    for r in rows:
        label = f"latency x{r.watchers:,}"
        if r.writer.errors:
            notes.append(
                f"- {label}: {r.writer.errors} CreateUser calls failed: {r.writer.first_error}"
            )
        errors = sum(c.errors for c in r.clients)
        if errors:
            first = next(c.first_error for c in r.clients if c.errors)
            notes.append(f"- {label}: {errors} watch streams ended with an error: {first}")
        out_of_order = sum(c.out_of_order for c in r.clients)
        if out_of_order:
            notes.append(f"- {label}: {out_of_order} changes came out of position order")
        if r.most_received() > r.writer.ok:
            notes.append(
                f"- {label}: a watcher got {r.most_received():,} changes, more "
                f"than the {r.writer.ok:,} written"
            )
        if r.other_cores > 0.2:
            notes.append(f"- {label}: other work used {r.other_cores:.2f} cores meanwhile")
    return notes
