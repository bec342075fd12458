"""Watch suite, part 3: a watcher a million changes behind catches up.

The users are seeded by COPY, and the triggers append one change per user, unnumbered.
The server then numbers them (its sequencer, with no watcher connected); how long that
takes is reported as the sequencing rate, read from change_log_state while it runs. Then
one watcher resumes from position 0 (a token signed with the key the server stored) and
reads until it has every change: changes/s, and the client's CPU beside it, since one
Python client process may be what limits it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass

import asyncpg

from bench import database
from bench.cpu import CpuWindow, wait_idle
from bench.measurement import REPO, BenchError, say
from bench.server_process import ServerProcess
from bench.watch_client import CatchUpResult
from service.api.resume_tokens import ResumeTokenCodec
from service.db.server_keys import PAGE_TOKEN_KEY

CATCH_UP_DATABASE = "users_bench_watch_catchup"
RATE_TARGET = 100_000  # changes a second
TARGET_BEHIND = 1_000_000
POLL_SECONDS = 0.05
SEQUENCING_LIMIT_SECONDS = 1_800.0
EXIT_GRACE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class CatchUpArgs:
    users: int
    wait_idle: float


@dataclass(frozen=True, slots=True)
class Sequencing:
    changes: int
    from_start_seconds: float  # from the server's spawn until every change had a position
    first_seen: int  # last_position at the first poll that found any numbered
    seconds: float  # from that poll until every change had a position

    def per_second(self) -> float:
        return (self.changes - self.first_seen) / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class CatchUp:
    changes: int
    seed_seconds: float
    sequencing: Sequencing
    read: CatchUpResult
    server_cpu_seconds: float
    postgres_cores: float
    other_cores: float

    def server_cores(self) -> float:
        return self.server_cpu_seconds / self.read.seconds if self.read.seconds else 0.0

    def client_cores(self) -> float:
        return self.read.cpu_seconds / self.read.seconds if self.read.seconds else 0.0


async def measure(admin_url: str, args: CatchUpArgs) -> CatchUp:
    url = database.service_url(admin_url, CATCH_UP_DATABASE)
    dsn = database.driver_dsn(url)
    say(f"catch-up: recreating {CATCH_UP_DATABASE}, seeding {args.users:,} users by COPY")
    await database.recreate(admin_url, CATCH_UP_DATABASE)
    await database.migrate(url)
    started = time.monotonic()
    await database.seed(url, args.users)
    seed_seconds = time.monotonic() - started
    connection = await asyncpg.connect(dsn)
    try:
        changes = int(await connection.fetchval("SELECT count(*) FROM user_changes"))
        say(f"catch-up: {changes:,} changes to number; starting the server")
        spawned = time.monotonic()
        # Polled from before the spawn: the server numbers changes as soon as it starts.
        poll = asyncio.create_task(_sequenced(connection, changes, spawned))
        try:
            async with ServerProcess(url) as server:
                sequencing = await _until_numbered(poll, server)
                # The server stored its key at start; with PAGE_TOKEN_KEY set it uses that.
                key = await _token_key(connection)
                token = ResumeTokenCodec(key).issue(0)
                if args.wait_idle > 0:
                    await asyncio.to_thread(wait_idle, args.wait_idle)
                say(f"catch-up: one watcher reading {changes:,} changes from position 0")
                with CpuWindow(CATCH_UP_DATABASE) as window:
                    cpu = server.cpu_seconds()
                    read = await _read(server.target, token, changes)
                    cpu = server.cpu_seconds() - cpu
        finally:
            poll.cancel()
    finally:
        await connection.close()
    return CatchUp(
        changes=changes,
        seed_seconds=seed_seconds,
        sequencing=sequencing,
        read=read,
        server_cpu_seconds=cpu,
        postgres_cores=window.use.postgres / window.use.wall,
        other_cores=window.use.other_cores(),
    )


async def _sequenced(connection: asyncpg.Connection, changes: int, spawned: float) -> Sequencing:
    first: tuple[float, int] | None = None
    while (now := time.monotonic()) - spawned < SEQUENCING_LIMIT_SECONDS:
        last = int(await connection.fetchval("SELECT last_position FROM change_log_state"))
        if last and first is None:
            first = (now, last)
        if last >= changes:
            assert first is not None
            return Sequencing(changes, now - spawned, first[1], now - first[0])
        await asyncio.sleep(POLL_SECONDS)
    raise BenchError(
        f"the server did not number {changes:,} changes in {SEQUENCING_LIMIT_SECONDS:.0f} s"
    )


async def _until_numbered(poll: asyncio.Task[Sequencing], server: ServerProcess) -> Sequencing:
    while not poll.done():
        await asyncio.wait({poll}, timeout=1.0)
        if not server.running():
            raise BenchError(f"the server died while numbering changes:\n{server.log_tail()}")
    return poll.result()


async def _token_key(connection: asyncpg.Connection) -> bytes:
    if os.environ.get("PAGE_TOKEN_KEY"):
        return os.environ["PAGE_TOKEN_KEY"].encode("utf-8")
    stored = await connection.fetchval(
        "SELECT secret FROM server_keys WHERE name = $1", PAGE_TOKEN_KEY
    )
    if stored is None:
        raise BenchError("the server stored no page-token key; cannot sign a resume token")
    return bytes.fromhex(stored)


async def _read(target: str, token: str, changes: int) -> CatchUpResult:
    limit = max(600.0, changes / 1_000)  # seconds: at 1,000 changes/s, still an answer
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.watch_client",
        "catch-up",
        f"--target={target}",
        f"--resume-token={token}",
        f"--count={changes}",
        f"--timeout={limit}",
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(child.communicate(), limit + EXIT_GRACE_SECONDS)
    if child.returncode != 0:
        raise BenchError(f"the catch-up watcher exited {child.returncode}")
    return CatchUpResult.from_json(out.decode().strip().splitlines()[-1])


def render(result: CatchUp) -> list[str]:
    s, r = result.sequencing, result.read
    return [
        f"Catch-up: {result.changes:,} users seeded by COPY ({result.seed_seconds:.1f} s, "
        "triggers included), so as many unnumbered changes; the server numbers them with "
        "no watcher connected, then one watcher (bench/watch_client.py, grpc.aio, one "
        "process) resumes from position 0 and reads them all; cores are over the read.",
        "",
        "| changes behind | numbered within, s of server start | sequencing changes/s "
        "| read s | first change ms | changes/s | server cores | client cores "
        "| PostgreSQL cores | target |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
        f"| {result.changes:,} | {s.from_start_seconds:.1f} | {s.per_second():,.0f} "
        f"| {r.seconds:.1f} | {r.first_change_ms:.0f} | {r.per_second:,.0f} "
        f"| {result.server_cores():.2f} | {result.client_cores():.2f} "
        f"| {result.postgres_cores:.2f} | ≥ {RATE_TARGET:,}/s: "
        f"{'ok' if target_met(result) else 'MISS'} |",
    ]


def target_met(result: CatchUp) -> bool:
    return result.read.received == result.changes and result.read.per_second >= RATE_TARGET


def verdict(result: CatchUp) -> str:
    r = result.read
    line = (
        f"- Catch-up from {result.changes:,} changes behind: {r.per_second:,.0f} changes/s "
        f"(target ≥ {RATE_TARGET:,}): {'ok' if target_met(result) else 'MISS'}; the client "
        f"used {result.client_cores():.2f} cores, the server {result.server_cores():.2f}"
    )
    if r.received != result.changes:
        line += f"; only {r.received:,} of {result.changes:,} arrived ({r.error or 'no error'})"
    if result.changes < TARGET_BEHIND:
        line += f"; the issue's figure is from {TARGET_BEHIND:,} behind (the start weighs less)"
    return line


def problems(result: CatchUp) -> list[str]:
    notes = []
    if result.read.out_of_order:
        notes.append(f"- catch-up: {result.read.out_of_order} changes out of position order")
    if result.read.error:
        notes.append(f"- catch-up: the watcher stopped: {result.read.error}")
    if result.other_cores > 0.2:
        notes.append(f"- catch-up: other work used {result.other_cores:.2f} cores meanwhile")
    return notes
