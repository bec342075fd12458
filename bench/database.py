"""The bench database: dropped and recreated each run, migrated by the service, seeded fast."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from bench.measurement import REPO, BenchError
from bench.source_tree import python_env

BENCH_DATABASE = "users_bench"
SEED_DOMAINS = 100


def service_url(admin_url: str, database: str = BENCH_DATABASE) -> str:
    """The SQLAlchemy URL the service is given: the admin URL, another database."""
    return make_url(admin_url).set(database=database).render_as_string(hide_password=False)


def driver_dsn(url: str) -> str:
    """The same URL as asyncpg takes it (no "+asyncpg" dialect suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def recreate(admin_url: str, database: str = BENCH_DATABASE) -> None:
    try:
        connection = await asyncpg.connect(driver_dsn(admin_url))
    except (OSError, asyncpg.PostgresError) as error:
        shown = make_url(admin_url).render_as_string(hide_password=True)
        raise BenchError(
            f"cannot reach PostgreSQL at {shown} ({type(error).__name__}: {error}); "
            "run `make dbs` or pass --database-url"
        ) from error
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()


async def migrate(url: str, tree: Path = REPO) -> None:
    """Through the service's own CLI, so the schema is exactly what it serves (the CLI of
    `tree`, for another commit's service)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "migrate",
        f"--database-url={url}",
        cwd=tree,
        env=python_env(tree),
    )
    if await child.wait() != 0:
        raise BenchError(f"python -m service migrate exited {child.returncode}")


SeedRow = tuple[int, str, str, str, datetime, datetime, int]


def seed_rows(count: int, now: datetime) -> Iterator[SeedRow]:
    for user_id in range(1, count + 1):
        domain = f"example{user_id % SEED_DOMAINS}.com"
        yield (user_id, f"Seeded User {user_id}", f"user{user_id}@{domain}", domain, now, now, 1)


# The columns a seed COPYs into users, ids included (the sequence is moved past them).
USER_COLUMNS = ("id", "name", "email", "email_domain", "create_time", "update_time", "version")


async def seed(url: str, count: int) -> None:
    """`count` users by COPY, then the id sequence moved past them and statistics fresh."""
    connection = await asyncpg.connect(driver_dsn(url))
    try:
        await connection.copy_records_to_table(
            "users",
            records=seed_rows(count, datetime.now(UTC)),
            columns=USER_COLUMNS,
        )
        await connection.execute(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), $1, $2)",
            max(count, 1),
            count > 0,
        )
        # Visibility map and statistics as a long-running table would have them, and no
        # checkpoint of the seed landing inside a measured window.
        await connection.execute("VACUUM (ANALYZE) users")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def describe_server(url: str) -> str:
    """Version and the settings that decide what a commit costs."""
    connection = await asyncpg.connect(driver_dsn(url))
    try:
        version = await connection.fetchval("SHOW server_version")
        settings = [
            f"{name} {await connection.fetchval(f'SHOW {name}')}"
            for name in ("fsync", "synchronous_commit", "shared_buffers", "max_connections")
        ]
    finally:
        await connection.close()
    return f"{version} ({', '.join(settings)})"
