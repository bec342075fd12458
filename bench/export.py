"""`--suite export` (issue 16): the operator commands against the raw RPCs, same run.

- `users-service export` of every user to JSON lines (a file) against StreamUsers read by
  the benchmark client (bench.bulk_client: messages counted, nothing formatted), in the
  same batches of 1000, on the same server; two rounds, alternating, best of each;
- `users-service import` of that file into a new database against ImportUsers of as many
  rows driven by the benchmark client (messages built before its clock starts), each into
  a new database of its own.
Each command's own figure is the one it prints (its clock starts before its first call,
as the benchmark client's does); the command's wall time, process start-up included, is
reported beside it.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench import database, large_seed
from bench.measurement import REPO, BenchError, say
from bench.report import Environment, load_average
from bench.server_process import ServerProcess

BATCH = 1000  # users_client.cli.EXPORT_BATCH
ROUNDS = 2
IMPORT_DATABASE = "users_bench_import"
SUMMARY = re.compile(r"(?:exported|imported) ([\d,]+) users in ([\d.]+) s")


@dataclass(frozen=True, slots=True)
class Timed:
    rows: int
    seconds: float
    wall: float = 0.0

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def wall_per_second(self) -> float:
        return self.rows / self.wall if self.wall else 0.0


async def _bench_client(target: str, *flags: str) -> Timed:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bulk_client", f"--target={target}", *flags,
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise BenchError(f"bench.bulk_client {' '.join(flags)} exited {child.returncode}")
    fields = json.loads(out.decode().strip().splitlines()[-1])
    return Timed(int(fields["rows"]), float(fields["seconds"]))


async def _command(*args: str) -> Timed:
    """`python -m service <args>`: the rows and seconds of its summary line, and its wall
    time."""
    began = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", *args,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await child.communicate()
    wall = time.perf_counter() - began
    said = (out + err).decode()
    found = SUMMARY.search(said)
    if child.returncode != 0 or found is None:
        raise BenchError(f"service {args[0]} exited {child.returncode}: {said[-2000:]}")
    return Timed(int(found.group(1).replace(",", "")), float(found.group(2)), wall)


async def _fresh_import_database(admin_url: str) -> str:
    await database.recreate(admin_url, IMPORT_DATABASE)
    url = database.service_url(admin_url, IMPORT_DATABASE)
    await database.migrate(url)
    return url


async def _drop(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(database.driver_dsn(admin_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def _row(label: str, command: Timed, raw: Timed, target: str) -> str:
    ratio = command.per_second / raw.per_second if raw.per_second else 0.0
    return (
        f"| {label} | {command.per_second:,.0f} ({command.wall_per_second:,.0f} wall) | "
        f"{raw.per_second:,.0f} | {ratio:.2f} | {target} | {'yes' if ratio >= 0.7 else 'no'} |"
    )


async def run(admin_url: str, users: int, addresses: int, *, reseed: bool) -> None:
    started = time.monotonic()
    url = await large_seed.prepare(admin_url, users, addresses, reseed=reseed)
    environment = Environment.detect(await database.describe_server(url))
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        exported_file = Path(scratch) / "users.jsonl"
        streams: list[Timed] = []
        exports: list[Timed] = []
        async with ServerProcess(url) as server:
            for round_ in range(1, ROUNDS + 1):
                say(f"round {round_}: StreamUsers BASIC by the benchmark client")
                streams.append(
                    await _bench_client(
                        server.target, "stream", "--view=basic", f"--batch-size={BATCH}"
                    )
                )
                say(f"round {round_}: users-service export to JSON lines")
                exports.append(
                    await _command("export", "--target", server.target, "-o", str(exported_file))
                )
        size_mib = exported_file.stat().st_size / 2**20
        say(f"users-service import of the file ({size_mib:,.0f} MiB) into a new database")
        async with ServerProcess(await _fresh_import_database(admin_url)) as server:
            imported = await _command("import", str(exported_file), "--target", server.target)
        say(f"ImportUsers of {users:,} by the benchmark client into a new database")
        async with ServerProcess(await _fresh_import_database(admin_url)) as server:
            tag = f"bench{int(time.time())}-"
            client_import = await _bench_client(
                server.target, "import", f"--count={users}", f"--prefix={tag}"
            )
    await _drop(admin_url, IMPORT_DATABASE)
    stream = max(streams, key=lambda t: t.per_second)
    export = max(exports, key=lambda t: t.per_second)
    lines = [
        f"- Machine: {environment.cpu}, {environment.cores} cores, "
        f"{environment.memory_gib:.1f} GiB RAM; {environment.system}",
        f"- Service: {environment.revision}",
        f"- Python {environment.python}; {environment.libraries}",
        f"- PostgreSQL {environment.postgres}",
        f"- Load average at start: {environment.load_average}; at end: {load_average()}",
        f"- {users:,} seeded users; StreamUsers in batches of {BATCH} for both; the export "
        f"file is {size_mib:,.0f} MiB of JSON lines; each import into a new database.",
        f"- StreamUsers rounds (rows/s): {', '.join(f'{t.per_second:,.0f}' for t in streams)}; "
        f"export rounds: {', '.join(f'{t.per_second:,.0f}' for t in exports)}",
        "",
        "| measurement, rows/s | command (wall) | raw RPC, benchmark client | ratio | target "
        "| met |",
        "|---|--:|--:|--:|---|---|",
        _row("export 1M users to JSON lines vs StreamUsers BASIC", export, stream, "≥ 0.7"),
        _row("import of that file vs ImportUsers", imported, client_import, "≥ 0.7"),
    ]
    if {export.rows, imported.rows, client_import.rows, stream.rows} != {users}:
        lines.append(
            f"\nProblem: rows {stream.rows:,} streamed, {export.rows:,} exported, "
            f"{imported.rows:,} imported, {client_import.rows:,} imported by the client"
        )
    print("\n".join(lines))
    say(f"done in {time.monotonic() - started:.0f} s")
