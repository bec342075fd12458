"""`--suite bulk` (issue 5): StreamUsers, ImportUsers and BatchCreateUsers on a million users.

Each service figure has a raw asyncpg figure from the same run beside it:
- StreamUsers BASIC against asyncpg reading the same rows in keyset batches of the same
  size (`id > $1 ORDER BY id LIMIT $2`, prepared);
- ImportUsers against asyncpg's copy_records_to_table of the same rows into users.
The load generator is a separate process (bench.bulk_client); the server's RSS is
sampled every 50 ms while each stream runs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import psutil  # type: ignore[import-untyped]

from bench import database, large_seed
from bench.bulk_client import import_email
from bench.ceiling import BareServer
from bench.measurement import REPO, BenchError, say
from bench.report import Environment, load_average
from bench.server_process import RssSampler, ServerProcess

MIB = 1024 * 1024
STREAM_BATCH = 500  # API.md's default batch_size
BATCH_CREATE_SIZE = 1000
BATCH_CREATE_REPEATS = 10


@dataclass(frozen=True, slots=True)
class Throughput:
    rows: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


async def _client(target: str, *flags: str) -> Throughput:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.bulk_client",
        f"--target={target}",
        *flags,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise BenchError(f"bench.bulk_client {' '.join(flags)} exited {child.returncode}")
    fields = json.loads(out.decode().strip().splitlines()[-1])
    return Throughput(int(fields["rows"]), float(fields["seconds"]))


def _rss(pid: int) -> int:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


async def _watched(pid: int, target: str, *flags: str) -> tuple[Throughput, int]:
    """The client's figure and the server's peak RSS while it ran."""
    sampler = RssSampler(pid)
    sampler.start()
    try:
        measured = await _client(target, *flags)
    finally:
        sampler.stop()
    return measured, sampler.peak_bytes


async def _raw_stream(dsn: str, batch: int) -> Throughput:
    connection = await asyncpg.connect(dsn)
    try:
        statement = await connection.prepare(
            "SELECT id, name, email, create_time, update_time, version FROM users "
            "WHERE id > $1 ORDER BY id LIMIT $2"
        )
        rows, last = 0, 0
        began = time.perf_counter()
        while True:
            records = await statement.fetch(last, batch)
            rows += len(records)
            if len(records) < batch:
                break
            last = records[-1]["id"]
        return Throughput(rows, time.perf_counter() - began)
    finally:
        await connection.close()


async def _raw_copy(dsn: str, count: int, prefix: str) -> Throughput:
    now = datetime.now(UTC)
    records = [
        (f"Loaded User {i}", import_email(prefix, i), "import.example.com", now, now, 1)
        for i in range(count)
    ]
    connection = await asyncpg.connect(dsn)
    try:
        began = time.perf_counter()
        await connection.copy_records_to_table(
            "users",
            records=records,
            columns=("name", "email", "email_domain", "create_time", "update_time", "version"),
        )
        return Throughput(count, time.perf_counter() - began)
    finally:
        await connection.close()


async def run(admin_url: str, users: int, addresses: int, *, reseed: bool) -> None:
    started = time.monotonic()
    url = await large_seed.prepare(admin_url, users, addresses, reseed=reseed)
    dsn = database.driver_dsn(url)
    environment = Environment.detect(await database.describe_server(url))
    say("raw asyncpg keyset read")
    await _raw_stream(dsn, STREAM_BATCH)  # warms the cache as the service's run will find it
    raw_stream = await _raw_stream(dsn, STREAM_BATCH)
    tag = f"{int(time.time())}-"
    async with ServerProcess(url) as server:
        await asyncio.sleep(1.0)
        idle = _rss(server.pid)
        say("StreamUsers BASIC")
        basic, basic_peak = await _watched(
            server.pid, server.target, "stream", "--view=basic", f"--batch-size={STREAM_BATCH}"
        )
        say("StreamUsers FULL")
        full, full_peak = await _watched(
            server.pid, server.target, "stream", "--view=full", f"--batch-size={STREAM_BATCH}"
        )
        say(f"ImportUsers of {users:,}")
        imported = await _client(server.target, "import", f"--count={users}", f"--prefix=svc{tag}")
        say(f"BatchCreateUsers of {BATCH_CREATE_SIZE} x{BATCH_CREATE_REPEATS}")
        batch = await _client(
            server.target,
            "batch",
            f"--count={BATCH_CREATE_SIZE}",
            f"--repeats={BATCH_CREATE_REPEATS}",
            f"--prefix=batch{tag}",
        )
    # The same stream from the bare grpc.aio server (bench/bare_server.py: asyncpg rows
    # straight into messages, nothing else): what Python gRPC itself reaches here.
    async with BareServer(dsn) as bare:
        say("StreamUsers BASIC on the bare grpc.aio server")
        bare_stream = await _client(
            bare.target, "stream", "--view=basic", f"--batch-size={STREAM_BATCH}"
        )
    say(f"raw asyncpg copy_records_to_table of {users:,}")
    raw_copy = await _raw_copy(dsn, users, f"raw{tag}")
    lines = [
        f"- Machine: {environment.cpu}, {environment.cores} cores, "
        f"{environment.memory_gib:.1f} GiB RAM; {environment.system}",
        f"- Service: {environment.revision}",
        f"- Python {environment.python}; {environment.libraries}",
        f"- PostgreSQL {environment.postgres}",
        f"- Load average at start: {environment.load_average}; at end: {load_average()}",
        f"- {users:,} seeded users, {addresses:,} addresses; streams in batches of "
        f"{STREAM_BATCH}; import in messages of 1000 rows; one client process.",
        "",
        "| measurement | service | raw asyncpg | ratio | target |",
        "|---|--:|--:|--:|---|",
        f"| StreamUsers BASIC, rows/s | {basic.per_second:,.0f} | "
        f"{raw_stream.per_second:,.0f} | {basic.per_second / raw_stream.per_second:.2f} | ≥ 0.5 |",
        f"| StreamUsers BASIC from the bare grpc.aio server, rows/s | "
        f"{bare_stream.per_second:,.0f} | {raw_stream.per_second:,.0f} | "
        f"{bare_stream.per_second / raw_stream.per_second:.2f} | reference |",
        f"| StreamUsers FULL, rows/s | {full.per_second:,.0f} | | | report |",
        f"| server RSS during BASIC stream, MiB above idle ({idle / MIB:.0f} MiB) | "
        f"{(basic_peak - idle) / MIB:.1f} | | | < 50 |",
        f"| server RSS during FULL stream, MiB above idle | {(full_peak - idle) / MIB:.1f} "
        "| | | report |",
        f"| ImportUsers of {imported.rows:,}, rows/s | {imported.per_second:,.0f} | "
        f"{raw_copy.per_second:,.0f} | {imported.per_second / raw_copy.per_second:.2f} "
        "| ≥ 0.25 |",
        f"| BatchCreateUsers of {BATCH_CREATE_SIZE}, users/s (mean of "
        f"{BATCH_CREATE_REPEATS} calls) | {batch.per_second:,.0f} | | | report |",
    ]
    if basic.rows != users or full.rows != users:
        lines.append(f"\nProblem: streams returned {basic.rows:,} / {full.rows:,} rows")
    print("\n".join(lines))
    say(f"done in {time.monotonic() - started:.0f} s")
