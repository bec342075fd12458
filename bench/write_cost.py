"""Watch suite, part 2: what the change log costs a write.

CreateUser req/s at 64 calls in flight, closed loop (the Go load generator of
../shared/anchors), for the current code and for the commit before WatchUsers, both in
one run: that commit is checked out beside this one (bench/source_tree.py), each side on
a database of its own, created and migrated by its own code. The sides take turns,
A B A B ..., a fresh server each turn, and each side's figure is the median of its turns,
so drift of a shared machine falls on both.
"""

from __future__ import annotations

import asyncio
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench import database, grpcload
from bench.cpu import CpuWindow, wait_idle
from bench.measurement import REPO, BenchError, say
from bench.server_process import ServerProcess
from bench.source_tree import short_commit, worktree

CONCURRENCY = 64
CONNECTIONS = 4
DEADLINE_SECONDS = 10.0
RATIO_TARGET = 0.85
CURRENT_DATABASE = "users_bench_watch_write"
BEFORE_DATABASE = "users_bench_watch_before"


@dataclass(frozen=True, slots=True)
class WriteArgs:
    before_commit: str  # the commit before WatchUsers
    rounds: int  # turns each side takes
    warmup: float
    duration: float
    wait_idle: float
    anchors: Path


@dataclass(frozen=True, slots=True)
class Side:
    label: str
    database: str
    url: str
    tree: Path


@dataclass(frozen=True, slots=True)
class WriteRun:
    side: str
    turn: int
    load: grpcload.LoadResult
    server_cpu_seconds: float  # inside the measured window
    postgres_cores: float
    other_cores: float

    def server_us_per_call(self) -> float:
        calls = self.load.ok + self.load.failed
        return self.server_cpu_seconds * 1e6 / calls if calls else 0.0


@dataclass(frozen=True, slots=True)
class WriteCost:
    current: str  # labels of the two sides
    before: str
    runs: Sequence[WriteRun]

    def median(self, side: str) -> float:
        return statistics.median(r.load.per_second for r in self.runs if r.side == side)

    def ratio(self) -> float:
        before = self.median(self.before)
        return self.median(self.current) / before if before else 0.0


async def measure(admin_url: str, args: WriteArgs) -> WriteCost:
    binary = await asyncio.to_thread(grpcload.build, args.anchors)
    before_label = f"before WatchUsers ({short_commit(args.before_commit)})"
    current_label = f"current ({short_commit('HEAD')})"
    async with worktree(args.before_commit) as tree:
        sides = (
            await _prepare(admin_url, current_label, CURRENT_DATABASE, REPO, change_log=True),
            await _prepare(admin_url, before_label, BEFORE_DATABASE, tree, change_log=False),
        )
        runs = []
        for turn in range(1, args.rounds + 1):
            for side in sides:
                say(f"write cost: {side.label}, turn {turn} of {args.rounds}")
                runs.append(await _run(side, turn, binary, args))
    return WriteCost(current_label, before_label, runs)


async def _prepare(admin_url: str, label: str, name: str, tree: Path, *, change_log: bool) -> Side:
    url = database.service_url(admin_url, name)
    await database.recreate(admin_url, name)
    await database.migrate(url, tree)
    # A check that each side runs its own code: the older one has no change log.
    connection = await asyncpg.connect(database.driver_dsn(url))
    try:
        found = await connection.fetchval("SELECT to_regclass('user_changes') IS NOT NULL")
    finally:
        await connection.close()
    if found != change_log:
        raise BenchError(
            f"{label}: user_changes {'missing' if change_log else 'present'} after migrating "
            f"{name} from {tree}; the wrong service code ran"
        )
    return Side(label, name, url, tree)


async def _run(side: Side, turn: int, binary: Path, args: WriteArgs) -> WriteRun:
    async with ServerProcess(side.url, tree=side.tree) as server:
        if args.wait_idle > 0:
            waited = await asyncio.to_thread(wait_idle, args.wait_idle)
            if waited >= args.wait_idle:
                say(f"the machine stayed busy for {waited:.0f} s; measuring anyway")
        load = grpcload.CreateLoad(
            target=server.target,
            concurrency=CONCURRENCY,
            connections=CONNECTIONS,
            deadline=DEADLINE_SECONDS,
            warmup=args.warmup,
            duration=args.duration,
            tag=uuid.uuid4().hex[:10],
        )
        process = await grpcload.start(binary, load)
        # grpcload measures from the end of its warm-up: the server's CPU is read there.
        await asyncio.sleep(args.warmup)
        with CpuWindow(side.database) as window:
            cpu = server.cpu_seconds()
            await asyncio.sleep(args.duration)
            cpu = server.cpu_seconds() - cpu
        result = await grpcload.finish(process, load)
    if server.exit_code != 0:
        say(f"{side.label}: the server exited {server.exit_code} on SIGTERM (expected 0)")
    return WriteRun(
        side=side.label,
        turn=turn,
        load=result,
        server_cpu_seconds=cpu,
        postgres_cores=window.use.postgres / window.use.wall,
        other_cores=window.use.other_cores(),
    )


def render(cost: WriteCost, args: WriteArgs) -> list[str]:
    lines = [
        f"The write cost: CreateUser at {CONCURRENCY} calls in flight, closed loop (grpcload, "
        f"grpc-go, GOMAXPROCS=1, {CONNECTIONS} connections), {args.warmup:g} s warm-up then "
        f"{args.duration:g} s measured per turn; the sides alternate, a fresh server each turn, "
        "each on its own database migrated by its own code; cores are over the window.",
        "",
        "| code | turn | CreateUser/s | p50 ms | p99 ms | server cores | server µs/call "
        "| PostgreSQL cores | failed calls |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in cost.runs:
        lines.append(
            f"| {r.side} | {r.turn} | {r.load.per_second:,.0f} | {r.load.p50_ms:.1f} "
            f"| {r.load.p99_ms:.1f} | {r.server_cpu_seconds / r.load.seconds:.2f} "
            f"| {r.server_us_per_call():.0f} | {r.postgres_cores:.2f} | {r.load.failed:,} |"
        )
    return lines


def target_met(cost: WriteCost) -> bool:
    return cost.ratio() >= RATIO_TARGET


def verdict(cost: WriteCost) -> str:
    return (
        f"- The write cost: CreateUser/s x{CONCURRENCY}, median, {cost.current} "
        f"{cost.median(cost.current):,.0f} ÷ {cost.before} {cost.median(cost.before):,.0f} "
        f"= {cost.ratio():.2f} (target ≥ {RATIO_TARGET:g}): "
        f"{'ok' if target_met(cost) else 'MISS'}"
    )


def problems(cost: WriteCost) -> list[str]:
    notes = []
    for r in cost.runs:
        label = f"write cost, {r.side}, turn {r.turn}"
        if r.load.failed:
            notes.append(f"- {label}: {r.load.failed} failed calls: {r.load.first_error}")
        if r.load.mismatched:
            notes.append(f"- {label}: {r.load.mismatched} answers without a user id")
        if r.other_cores > 0.2:
            notes.append(f"- {label}: other work used {r.other_cores:.2f} cores meanwhile")
    return notes
