"""`python -m bench --suite ceiling` (issue 7): the service against bench/bare_server.py.

Each row runs the service and a baseline under the same closed loop (bench/ceiling_client.py,
its own process) and prints the ratio beside its target. The bare server is the ceiling of
Python gRPC on this machine; the 2-worker row is measured against the 1-worker service.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc
from users.v1 import user_service_pb2, user_service_pb2_grpc

from bench import database
from bench.cpu import tree_cpu_seconds, wait_idle
from bench.measurement import REPO, BenchError, Measurement, Operation, measure_in_child, say
from bench.report import Environment
from bench.server_process import ServerProcess, free_port
from service.api.auth import digest_of

CEILING_DATABASE = "users_bench_ceiling"
ADDRESSES_EACH = 2
CONCURRENCY = 64
BENCH_TOKEN = "ceiling-bench-token"  # a read token: GetUser is all the auth row calls


@dataclass(frozen=True, slots=True)
class Run:
    measured: Measurement
    server_cpu_seconds: float

    def cpu_ms_per_call(self) -> float:
        calls = self.measured.calls
        return self.server_cpu_seconds * 1000 / calls if calls else 0.0


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    service: Run
    baseline_label: str
    baseline: Run
    target: float  # service req/s ÷ baseline req/s must reach this
    p99_target: float | None = None  # service p99 ÷ baseline p99 must stay under this

    def ratio(self) -> float:
        base = self.baseline.measured.per_second
        return self.service.measured.per_second / base if base else 0.0

    def p99_ratio(self) -> float:
        base = self.baseline.measured.p99_ms
        return self.service.measured.p99_ms / base if base else 0.0

    def met(self) -> bool:
        if self.ratio() < self.target:
            return False
        return self.p99_target is None or self.p99_ratio() <= self.p99_target


@dataclass(frozen=True, slots=True)
class Args:
    warmup: float
    duration: float
    wait_idle: float


class BareServer:
    """bench/bare_server.py as a subprocess, used once a GetUser succeeds."""

    def __init__(self, dsn: str) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self._dsn = dsn
        self._process: asyncio.subprocess.Process | None = None

    def cpu_seconds(self) -> float:
        assert self._process is not None
        return tree_cpu_seconds(self._process.pid)

    async def __aenter__(self) -> BareServer:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.bare_server",
            f"--port={self.port}",
            f"--dsn={self._dsn}",
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = user_service_pb2_grpc.UserServiceStub(channel)
            while time.monotonic() < deadline:
                try:
                    await stub.GetUser(user_service_pb2.GetUserRequest(id=1), timeout=1)
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
                else:
                    return self
        await self.__aexit__()
        raise BenchError("bench.bare_server did not answer within 30 s")

    async def __aexit__(self, *_exc: object) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
            await self._process.wait()


async def _load(
    target: str, operation: Operation, view: str, users: int, args: Args, *, token: str = ""
) -> Measurement:
    if args.wait_idle > 0:
        await asyncio.to_thread(wait_idle, args.wait_idle)
    return await measure_in_child(
        "bench.ceiling_client",
        [
            f"--target={target}",
            f"--max-id={users}",
            f"--view={view}",
            f"--operation={operation}",
            f"--concurrency={CONCURRENCY}",
            f"--warmup={args.warmup}",
            f"--duration={args.duration}",
            f"--token={token}",
        ],
    )


async def _service(
    url: str,
    operation: Operation,
    view: str,
    users: int,
    args: Args,
    *flags: str,
    token: str = "",
) -> Run:
    async with ServerProcess(url, flags) as server:
        cpu = server.cpu_seconds()
        measured = await _load(server.target, operation, view, users, args, token=token)
        return Run(measured, server.cpu_seconds() - cpu)


async def _bare(dsn: str, operation: Operation, users: int, args: Args) -> Run:
    async with BareServer(dsn) as bare:
        cpu = bare.cpu_seconds()
        measured = await _load(bare.target, operation, "basic", users, args)
        return Run(measured, bare.cpu_seconds() - cpu)


async def _seed_addresses(dsn: str, users: int) -> None:
    connection = await asyncpg.connect(dsn)
    now = datetime.now(UTC)
    try:
        await connection.copy_records_to_table(
            "addresses",
            records=(
                (user_id, f"a{n}.user{user_id}@bench.example.com", now, now, 1)
                for user_id in range(1, users + 1)
                for n in range(ADDRESSES_EACH)
            ),
            columns=("user_id", "email", "create_time", "update_time", "version"),
        )
        await connection.execute("VACUUM (ANALYZE) addresses")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def run(admin_url: str, users: int, warmup: float, duration: float, idle: float) -> None:
    started = time.monotonic()
    args = Args(warmup, duration, idle)
    url = database.service_url(admin_url, CEILING_DATABASE)
    dsn = database.driver_dsn(url)
    say(f"recreating {CEILING_DATABASE}, seeding {users:,} users, {ADDRESSES_EACH} addresses each")
    await database.recreate(admin_url, CEILING_DATABASE)
    await database.migrate(url)
    await database.seed(url, users)
    await _seed_addresses(dsn, users)
    environment = Environment.detect(await database.describe_server(url))
    get, create = Operation.GET_USER, Operation.CREATE_USER

    say("GetUser: bare server, then the service (1 worker, BASIC and FULL)")
    bare_get = await _bare(dsn, get, users, args)
    one_worker = await _service(url, get, "basic", users, args)
    full = await _service(url, get, "full", users, args)
    say("GetUser: the service with --workers 2; with metrics and JSON logs")
    two_workers = await _service(url, get, "basic", users, args, "--workers=2")
    observed = await _service(
        url, get, "basic", users, args, f"--metrics-port={free_port()}", "--log-format=json"
    )
    say("GetUser: the service with auth on (a tokens file, a bearer token a call)")
    with tempfile.TemporaryDirectory() as folder:
        tokens = Path(folder, "tokens")
        await asyncio.to_thread(tokens.write_text, f"read {digest_of(BENCH_TOKEN)}\n")
        authed = await _service(
            url, get, "basic", users, args, f"--auth-tokens-file={tokens}", token=BENCH_TOKEN
        )
    say("CreateUser: bare server, then the service")
    bare_create = await _bare(dsn, create, users, args)
    created = await _service(url, create, "basic", users, args)

    bare = "bare GetUser"
    rows = [
        Row("GetUser BASIC x64", one_worker, bare, bare_get, 0.9, p99_target=1.5),
        Row("GetUser FULL (2 addresses) x64", full, bare, bare_get, 0.7),
        Row("CreateUser x64", created, "bare CreateUser", bare_create, 0.8),
        Row("GetUser BASIC x64, --workers 2", two_workers, "service, 1 worker", one_worker, 1.6),
        Row("GetUser BASIC x64, metrics + JSON logs", observed, bare, bare_get, 0.9, 1.5),
        Row("GetUser BASIC x64, auth on", authed, bare, bare_get, 0.9, 1.5),
    ]
    print(_render(environment, rows, users, args))
    say(f"done in {time.monotonic() - started:.0f} s")


def _render(env: Environment, rows: list[Row], users: int, args: Args) -> str:
    lines = [
        *env.header(),
        f"- {users:,} users with {ADDRESSES_EACH} addresses each; concurrency {CONCURRENCY}; "
        f"{args.warmup:g} s warm-up then {args.duration:g} s measured; closed loop, load "
        "generator (bench/ceiling_client.py) in its own process; a fresh server per run.",
        "",
        "| row | req/s | p50 ms | p99 ms | server CPU ms/call | baseline | baseline req/s "
        "| baseline p99 ms | ratio | p99 ratio | target | met |",
        "|---|--:|--:|--:|--:|---|--:|--:|--:|--:|---|---|",
    ]
    for r in rows:
        s, b = r.service.measured, r.baseline.measured
        target = f"≥ {r.target:g}x" + (f", p99 ≤ {r.p99_target:g}x" if r.p99_target else "")
        lines.append(
            f"| {r.label} | {s.per_second:,.0f} | {s.p50_ms:.2f} | {s.p99_ms:.2f} "
            f"| {r.service.cpu_ms_per_call():.3f} | {r.baseline_label} | {b.per_second:,.0f} "
            f"| {b.p99_ms:.2f} | {r.ratio():.2f} | {r.p99_ratio():.2f} | {target} "
            f"| {'yes' if r.met() else 'NO'} |"
        )
    errors = [r for r in rows if r.service.measured.errors or r.baseline.measured.errors]
    for r in errors:
        lines.append(
            f"\nErrors in {r.label}: {r.service.measured.first_error or '-'} / "
            f"{r.baseline.measured.first_error or '-'}"
        )
    bare_cpu = rows[0].baseline.cpu_ms_per_call()
    lines.append(f"\nBare server CPU per GetUser: {bare_cpu:.3f} ms.")
    return "\n".join(lines)
