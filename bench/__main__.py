"""`python -m bench`: seed, then per row run the service and the raw driver under the same load."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from bench import (
    bulk,
    catch_up,
    ceiling,
    database,
    export,
    grpcload,
    listing,
    overload,
    scale,
    watch,
    watch_latency,
    write_cost,
)
from bench.baseline import Mode, measure_driver, pool_size_for
from bench.cpu import CpuWindow, wait_idle
from bench.load import measure_service
from bench.measurement import BenchError, LoadShape, Operation, run_event_loop, say
from bench.report import Environment, RowResult, render
from bench.server_process import ServerProcess

DEFAULT_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", os.environ.get("TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)
        ),
        help="a PostgreSQL server's maintenance database; the bench drops and recreates "
        f"{database.BENCH_DATABASE!r} beside it (BENCH_DATABASE_URL, TEST_POSTGRES_URL)",
    )
    parser.add_argument("--users", type=int, default=100_000, help="users seeded (100000)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        help="on a shared machine: before each run wait up to this many seconds for the "
        "machine to be idle (0: don't wait)",
    )
    parser.add_argument(
        "--operations",
        type=_operations,
        default=list(Operation),
        help="comma-separated, in order (GetUser,CreateUser)",
    )
    parser.add_argument(
        "--concurrency", type=_counts, default=[1, 64], help="comma-separated (1,64)"
    )
    parser.add_argument(
        "--suite",
        choices=("unary", "listing", "bulk", "ceiling", "overload", "scale", "watch", "export"),
        default="unary",
        help="unary: GetUser/CreateUser against the driver (default); listing: ListUsers "
        "page 1 against page 10,000 (issue 4); bulk: StreamUsers, ImportUsers, "
        "BatchCreateUsers (issue 5). listing and bulk seed a million users. ceiling: "
        "GetUser, GetUser FULL, CreateUser, --workers 2 against bench/bare_server.py "
        "(issue 7; --users users with 2 addresses each). overload: GetUser BASIC from "
        "../shared/anchors' Go load generator at up to 4,000 calls in flight (issue 11). "
        "scale: ListUsers with reads on a streaming replica against none, GetUser through "
        "PgBouncer against direct (issue 15; private clusters). "
        "watch: WatchUsers change-to-delivery latency with --watchers watchers under "
        "CreateUser at --watch-rate calls/s; CreateUser x64 against --before-commit, side "
        "by side; catch-up from --catch-up-users changes behind (issue 13). "
        "export: `users-service export` of --large-users users to JSON lines against "
        "StreamUsers, and `import` of that file against ImportUsers, both from the "
        "benchmark client (issue 16).",
    )
    parser.add_argument(
        "--large-users", type=int, default=1_000_000, help="listing/bulk: users (1000000)"
    )
    parser.add_argument(
        "--large-addresses",
        type=int,
        default=2_000_000,
        help="listing/bulk: addresses (2000000)",
    )
    parser.add_argument(
        "--reuse-seed",
        action="store_true",
        help="listing/bulk: keep the seeded database of an earlier run of the same suite",
    )
    parser.add_argument(
        "--overload-concurrency",
        type=_counts,
        default=list(overload.CONCURRENCY),
        help="overload: calls in flight, one run each on one server, lowest first "
        "(64,256,1000,4000)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=_limits,
        default=[0],
        help="overload: a server per comma-separated --max-in-flight value; 0 is the "
        "service's default (0)",
    )
    parser.add_argument(
        "--compare-admission-off",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="overload: also the top concurrency on a server with admission off (yes)",
    )
    parser.add_argument(
        "--anchors-dir",
        type=Path,
        default=grpcload.DEFAULT_ANCHORS,
        help="overload/watch: the anchors folder holding tools/grpcload (../shared/anchors)",
    )
    parser.add_argument(
        "--watch-parts",
        type=_parts,
        default=list(watch.Part),
        help="watch: the parts to run, comma-separated (latency,write,catch-up)",
    )
    parser.add_argument(
        "--watchers",
        type=_counts,
        default=[1, 100, 1000],
        help="watch: concurrent watchers, a server per value (1,100,1000)",
    )
    parser.add_argument(
        "--watch-rate", type=float, default=500.0, help="watch: CreateUser calls/s, paced (500)"
    )
    parser.add_argument(
        "--watch-clients",
        type=int,
        default=4,
        help="watch: client processes the watchers are spread over, at most (4)",
    )
    parser.add_argument(
        "--watch-drain",
        type=float,
        default=30.0,
        help="watch: seconds after the last write the watchers may take to get every "
        "change before what they got is reported (30)",
    )
    parser.add_argument(
        "--write-rounds",
        type=int,
        default=3,
        help="watch: turns each side of the write cost takes, alternating (3)",
    )
    parser.add_argument(
        "--before-commit",
        default="3de4392",
        help="watch: the commit before WatchUsers, measured beside this code (3de4392)",
    )
    parser.add_argument(
        "--catch-up-users",
        type=int,
        default=1_000_000,
        help="watch: users seeded, so changes the catch-up watcher is behind (1000000)",
    )
    return parser


def _parts(raw: str) -> list[watch.Part]:
    try:
        return [watch.Part(name.strip()) for name in raw.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r}: use a comma-separated list of {', '.join(watch.Part)}"
        ) from None


def _limits(raw: str) -> list[int]:
    try:
        limits = [int(part) for part in raw.split(",")]
    except ValueError:
        limits = []
    if not limits or min(limits) < 0:
        raise argparse.ArgumentTypeError(f"{raw!r}: use whole numbers, 0 for the default")
    return limits


def _operations(raw: str) -> list[Operation]:
    try:
        return [Operation(name.strip()) for name in raw.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r}: use a comma-separated list of {', '.join(Operation)}"
        ) from None


def _counts(raw: str) -> list[int]:
    try:
        counts = [int(part) for part in raw.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{raw!r}: use positive whole numbers, e.g. 1,64")
    return counts


async def _settle(limit_seconds: float) -> None:
    if limit_seconds > 0:
        waited = await asyncio.to_thread(wait_idle, limit_seconds)
        if waited >= limit_seconds:
            say(f"the machine stayed busy for {waited:.0f} s; measuring anyway")


async def _row(url: str, shape: LoadShape, users: int, wait_idle: float) -> RowResult:
    label = f"{shape.operation} x{shape.concurrency}"
    say(f"{label}: service")
    async with ServerProcess(url) as server:
        await _settle(wait_idle)
        server_cpu = server.cpu_seconds()
        with CpuWindow(database.BENCH_DATABASE) as service_cpu:
            service = await measure_service(server.target, shape, users)
        server_cpu = server.cpu_seconds() - server_cpu
    # The server is stopped before the baselines, so it takes no CPU from them.
    dsn = database.driver_dsn(url)
    say(f"{label}: raw asyncpg (pool of {pool_size_for(shape.concurrency)})")
    await _settle(wait_idle)
    with CpuWindow(database.BENCH_DATABASE) as raw_cpu:
        raw = await measure_driver(dsn, shape, users, Mode.QUERY)
    say(f"{label}: asyncpg replaying the service's statements")
    await _settle(wait_idle)
    with CpuWindow(database.BENCH_DATABASE) as replay_cpu:
        replay = await measure_driver(dsn, shape, users, Mode.REPLAY)
    return RowResult(
        operation=shape.operation,
        concurrency=shape.concurrency,
        service=service,
        server_peak_rss_bytes=server.peak_rss_bytes,
        server_exit_code=server.exit_code,
        server_cpu_seconds=server_cpu,
        service_cpu=service_cpu.use,
        raw=raw,
        raw_cpu=raw_cpu.use,
        replay=replay,
        replay_cpu=replay_cpu.use,
    )


async def _bench(args: argparse.Namespace) -> None:
    started = time.monotonic()
    admin_url: str = args.database_url
    url = database.service_url(admin_url)
    users: int = args.users
    say(f"recreating {database.BENCH_DATABASE}, migrating, seeding {users:,} users")
    await database.recreate(admin_url)
    await database.migrate(url)
    await database.seed(url, users)
    environment = Environment.detect(await database.describe_server(url))
    rows = []
    for operation in args.operations:
        for concurrency in args.concurrency:
            shape = LoadShape(operation, concurrency, args.warmup, args.duration)
            rows.append(await _row(url, shape, users, args.wait_idle))
    setup = (
        f"{users:,} seeded users; per run {args.warmup:g} s warm-up then {args.duration:g} s "
        "measured; closed loop (each worker sends its next call when the last returns); "
        "a fresh server per row; load generator and baselines each in their own process."
    )
    print(render(environment, rows, setup))
    say(f"done in {time.monotonic() - started:.0f} s")


async def _suite(args: argparse.Namespace) -> None:
    if args.suite == "listing":
        await listing.run(
            args.database_url,
            args.large_users,
            args.large_addresses,
            repeats=30,
            reseed=not args.reuse_seed,
        )
    elif args.suite == "bulk":
        await bulk.run(
            args.database_url,
            args.large_users,
            args.large_addresses,
            reseed=not args.reuse_seed,
        )
    elif args.suite == "export":
        await export.run(
            args.database_url,
            args.large_users,
            args.large_addresses,
            reseed=not args.reuse_seed,
        )
    elif args.suite == "overload":
        await overload.run(
            args.database_url,
            overload.Args(
                users=args.users,
                warmup=args.warmup,
                duration=args.duration,
                wait_idle=args.wait_idle,
                concurrency=sorted(args.overload_concurrency),
                limits=args.max_in_flight,
                compare_admission_off=args.compare_admission_off,
                anchors=args.anchors_dir,
            ),
        )
    elif args.suite == "watch":
        await watch.run(args.database_url, _watch_args(args))
    elif args.suite == "scale":
        await scale.run(scale.Args(args.warmup, args.duration, args.anchors_dir))
    elif args.suite == "ceiling":
        await ceiling.run(args.database_url, args.users, args.warmup, args.duration, args.wait_idle)
    else:
        await _bench(args)


def _watch_args(args: argparse.Namespace) -> watch.Args:
    if args.watch_clients < 1 or args.write_rounds < 1 or args.catch_up_users < 1:
        raise BenchError("--watch-clients, --write-rounds and --catch-up-users must be ≥ 1")
    return watch.Args(
        parts=args.watch_parts,
        latency=watch_latency.LatencyArgs(
            watchers=args.watchers,
            rate=args.watch_rate,
            clients=args.watch_clients,
            drain=args.watch_drain,
            warmup=args.warmup,
            duration=args.duration,
            wait_idle=args.wait_idle,
        ),
        write=write_cost.WriteArgs(
            before_commit=args.before_commit,
            rounds=args.write_rounds,
            warmup=args.warmup,
            duration=args.duration,
            wait_idle=args.wait_idle,
            anchors=args.anchors_dir,
        ),
        catch_up=catch_up.CatchUpArgs(users=args.catch_up_users, wait_idle=args.wait_idle),
    )


def main() -> None:
    try:
        run_event_loop(_suite(_parser().parse_args()))
    except BenchError as error:
        say(f"error: {error}")
        sys.exit(1)


if __name__ == "__main__":
    main()
