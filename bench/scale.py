"""`python -m bench --suite scale` (issue 15): ListUsers with its reads on a streaming
replica against none, and GetUser through PgBouncer against direct, in one run.

A private PostgreSQL primary and a streaming replica of it (pg_basebackup -R), and a
PgBouncer in transaction mode, are started for the run and removed after (the test
suite's helpers: tests/ops/cluster.py, tests/pgbouncer.py). On one 2-core machine a
replica adds no CPU: the ListUsers pair shows what the routing costs, not what a replica
on its own machine would add.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
from users.v1 import user_service_pb2, user_service_pb2_grpc

from bench import database, grpcload
from bench.measurement import say
from bench.report import Environment
from bench.server_process import ServerProcess
from tests.ops.cluster import PrivateCluster, PrivateReplica
from tests.pgbouncer import PgBouncer

USERS = 100_000
LIST_CONCURRENCY = 16
GET_CONCURRENCY = 64


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    per_second: float
    p99_ms: float
    failed: int
    server_cpu_seconds: float
    seconds: float


async def list_load(target: str, warmup: float, duration: float) -> tuple[int, int, list[float]]:
    """Closed loop of ListUsers pages (50 users, email_domain filter) from this process."""
    ok = failed = 0
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = user_service_pb2_grpc.UserServiceStub(channel)
        started = time.monotonic()
        measure_from, end = started + warmup, started + warmup + duration

        async def worker(n: int) -> None:
            nonlocal ok, failed
            while (now := time.monotonic()) < end:
                request = user_service_pb2.ListUsersRequest(
                    page_size=50, email_domain=f"example{n % database.SEED_DOMAINS}.com"
                )
                try:
                    await stub.ListUsers(request, timeout=5)
                except grpc.aio.AioRpcError:
                    failed += now >= measure_from
                    continue
                if now >= measure_from:
                    ok += 1
                    latencies.append(time.monotonic() - now)

        await asyncio.gather(*(worker(n) for n in range(LIST_CONCURRENCY)))
    return ok, failed, latencies


async def list_row(label: str, url: str, flags: tuple[str, ...], args: Args) -> Row:
    say(f"scale: ListUsers x{LIST_CONCURRENCY}, {label}")
    async with ServerProcess(url, flags) as server:
        cpu = server.cpu_seconds()
        ok, failed, latencies = await list_load(server.target, args.warmup, args.duration)
        cpu = server.cpu_seconds() - cpu
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0
    return Row(label, ok / args.duration, p99, failed, cpu, args.duration)


async def get_row(label: str, url: str, flags: tuple[str, ...], binary: Path, args: Args) -> Row:
    say(f"scale: GetUser x{GET_CONCURRENCY}, {label}")
    async with ServerProcess(url, flags) as server:
        cpu = server.cpu_seconds()
        load = grpcload.GetLoad(
            target=server.target,
            concurrency=GET_CONCURRENCY,
            connections=1,
            deadline=2.0,
            warmup=args.warmup,
            duration=args.duration,
            max_id=USERS,
        )
        result = await grpcload.finish(await grpcload.start(binary, load), load)
        cpu = server.cpu_seconds() - cpu
    return Row(label, result.per_second, result.p99_ms, result.failed, cpu, result.seconds)


@dataclass(frozen=True, slots=True)
class Args:
    warmup: float
    duration: float
    anchors: Path


async def replicated(primary_dsn: str, replica_dsn: str, count: int) -> None:
    for _ in range(600):
        connection = await asyncpg.connect(replica_dsn)
        try:
            if await connection.fetchval("SELECT count(*) FROM users") >= count:
                return
        finally:
            await connection.close()
        await asyncio.sleep(0.1)
    raise RuntimeError("the replica did not catch up with the seed")


async def run(args: Args) -> None:
    binary = await asyncio.to_thread(grpcload.build, args.anchors)
    rows: list[Row] = []
    with PrivateCluster() as primary, PrivateReplica(primary) as replica:
        url = primary.url
        say(f"scale: migrating and seeding {USERS:,} users on a private primary")
        await database.migrate(url)
        await database.seed(url, USERS)
        replica_url = replica.url_of("postgres")
        await replicated(database.driver_dsn(url), database.driver_dsn(replica_url), USERS)
        environment = Environment.detect(await database.describe_server(url))
        rows.append(await list_row("primary only", url, (), args))
        rows.append(
            await list_row("reads on the replica", url, ("--read-database-url", replica_url), args)
        )
        with PgBouncer(url) as bouncer:
            rows.append(await get_row("direct", url, (), binary, args))
            pooled = ("--database-pooler", "pgbouncer")
            rows.append(
                await get_row("through PgBouncer", bouncer.url_for(url), pooled, binary, args)
            )
    print(render(environment, rows, args))


def render(environment: Environment, rows: list[Row], args: Args) -> str:
    lines = [
        *environment.header(),
        "",
        f"Private PostgreSQL primary and streaming replica on this machine, {USERS:,} users; "
        f"per row {args.warmup:g} s warm-up then {args.duration:g} s measured, a fresh server "
        f"each. ListUsers: page_size 50 filtered by email_domain, {LIST_CONCURRENCY} workers "
        f"in the bench process. GetUser: grpcload (Go) x{GET_CONCURRENCY}, BASIC, random ids.",
        "",
        "| RPC | route | calls/s | p99 ms | failed | server CPU ms/call |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for index, row in enumerate(rows):
        rpc = "ListUsers" if index < 2 else "GetUser"
        calls = row.per_second * row.seconds
        per_call = row.server_cpu_seconds * 1000 / calls if calls else 0.0
        lines.append(
            f"| {rpc} | {row.label} | {row.per_second:,.0f} | {row.p99_ms:.1f} | {row.failed} "
            f"| {per_call:.3f} |"
        )
    return "\n".join(lines)
