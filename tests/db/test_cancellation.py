"""Statements cut short: on SQLite the writer is free at once; a connection asyncpg was
used on directly is discarded, never handed to the next call."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from service.db.engine import create_engine
from service.db.migrate import upgrade
from service.db.tables import users
from service.db.uow import SqlUnitOfWorkFactory
from service.domain.errors import StagedRepeatError
from service.domain.models import NewUser, View, utc_now
from service.domain.ports import StagedUser
from tests.backends import fresh_database

# How long the service's SQLite connections wait for the writer (engine.py): a write that
# finds it held fails after this long. Every bound below stays well under it.
BUSY_TIMEOUT_SECONDS = 10.0
FREED_WITHIN_SECONDS = 3.0


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with fresh_database("sqlite", tmp_path) as url:
        engine = create_engine(url)
        try:
            await upgrade(engine)
            yield engine
        finally:
            await engine.dispose()


@pytest.fixture
async def postgres_url(tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database("postgresql", tmp_path) as url:
        yield url


@pytest.fixture
async def postgres_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_url)
    try:
        await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def observer(postgres_url: str) -> AsyncIterator[AsyncConnection]:
    """A session of its own, outside the service's pool, that watches the others."""
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()


def sqlite_file(engine: AsyncEngine) -> str:
    path = make_url(str(engine.url)).database
    assert path is not None
    return path


def writer_free_within(path: str, seconds: float) -> bool:
    """Whether another connection gets the SQLite writer within `seconds`."""
    probe = sqlite3.connect(path, timeout=seconds, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()
    return True


def user_rows(count: int) -> list[dict[str, object]]:
    now = utc_now()
    return [
        {
            "name": "Cut short",
            "email": f"{uuid.uuid4().hex}@cut.test",
            "email_domain": "cut.test",
            "create_time": now,
            "update_time": now,
            "version": 1,
        }
        for _ in range(count)
    ]


async def test_a_write_cut_short_frees_the_sqlite_writer_at_once(
    sqlite_engine: AsyncEngine,
) -> None:
    # Another writer holds the lock, so the unit's INSERT waits inside SQLite; it is
    # cancelled there, and the other writer lets go just after.
    path = sqlite_file(sqlite_engine)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def write() -> None:
        async with sqlite_engine.begin() as connection:
            await connection.execute(insert(users), user_rows(2000))

    writing = asyncio.create_task(write())
    await asyncio.sleep(1.0)  # the INSERT has long reached SQLite's busy wait
    writing.cancel()
    holder.execute("ROLLBACK")
    holder.close()
    # The exception, and with it the statement's cursor, stays referenced meanwhile, as
    # in a server where it waits in a reference cycle for the garbage collector.
    with pytest.raises(asyncio.CancelledError) as cancelled:
        await writing
    started = time.monotonic()
    assert await asyncio.to_thread(writer_free_within, path, FREED_WITHIN_SECONDS), (
        "the SQLite writer is still held after a cancelled write"
    )
    assert time.monotonic() - started < FREED_WITHIN_SECONDS
    assert cancelled.value is not None
    async with sqlite_engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM users")) == 0


async def test_a_long_statement_cut_short_is_interrupted_on_sqlite(
    sqlite_engine: AsyncEngine,
) -> None:
    path = sqlite_file(sqlite_engine)
    started = asyncio.Event()

    async def write_then_count() -> None:
        async with sqlite_engine.begin() as connection:
            await connection.execute(insert(users), user_rows(1))  # holds the writer
            started.set()
            # Many seconds of work for SQLite, on the connection's own thread.
            await connection.execute(
                text(
                    "SELECT count(*) FROM (WITH RECURSIVE r(i) AS "
                    "(SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 50000000) SELECT i FROM r)"
                )
            )

    counting = asyncio.create_task(write_then_count())
    await started.wait()
    await asyncio.sleep(0.3)
    counting.cancel()
    cancelled_at = time.monotonic()
    assert await asyncio.to_thread(writer_free_within, path, FREED_WITHIN_SECONDS), (
        "the SQLite writer is held until the cancelled statement ends by itself"
    )
    with pytest.raises(asyncio.CancelledError):
        await counting
    assert time.monotonic() - cancelled_at < BUSY_TIMEOUT_SECONDS
    # The connection that ran it is gone; its replacement serves the next unit.
    async with sqlite_engine.begin() as connection:
        await connection.execute(insert(users), user_rows(1))


async def waiting_pid(observer: AsyncConnection) -> int:
    """The backend of the session that waits on a table lock, once it does."""
    for _ in range(200):
        await observer.rollback()  # pg_stat_activity is a snapshot per transaction
        pid = await observer.scalar(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.05)
    raise AssertionError("no session waits on the table lock")


async def session_gone(observer: AsyncConnection, pid: int) -> bool:
    for _ in range(100):
        await observer.rollback()
        found = await observer.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
        if not found:
            return True
        await asyncio.sleep(0.05)
    return False


def staged(count: int) -> list[StagedUser]:
    return [
        StagedUser(index, NewUser(name="Staged", email=f"{uuid.uuid4().hex}@cut.test"), "")
        for index in range(count)
    ]


async def cancelled_while_locked(
    engine: AsyncEngine, observer: AsyncConnection, table: str, work: Coroutine[Any, Any, None]
) -> int:
    """Runs `work` until it waits on a lock of `table`, cancels it there, then frees the
    lock; the backend pid that was running it."""
    async with engine.connect() as locker:
        await locker.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        task = asyncio.create_task(work)
        pid = await waiting_pid(observer)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await locker.rollback()
    return pid


async def test_a_copy_cut_short_discards_its_connection(
    postgres_engine: AsyncEngine, observer: AsyncConnection
) -> None:
    units = SqlUnitOfWorkFactory(postgres_engine)
    import_id = uuid.uuid4().hex
    async with units.writing() as uow:
        await uow.imports.open(import_id, utc_now())
        await uow.commit()

    async def stage() -> None:
        async with units.writing() as uow:
            await uow.imports.stage(import_id, staged(1000), utc_now())
            await uow.commit()

    pid = await cancelled_while_locked(postgres_engine, observer, "import_rows", stage())
    # asyncpg's connection may be mid-COPY: closed, not pooled for the next call.
    assert await session_gone(observer, pid), "the connection of a cancelled COPY was kept"
    async with units.writing() as uow:
        await uow.imports.stage(import_id, staged(10), utc_now())
        await uow.commit()


async def test_a_read_cut_short_discards_its_connection(
    postgres_engine: AsyncEngine, observer: AsyncConnection
) -> None:
    units = SqlUnitOfWorkFactory(postgres_engine)
    async with postgres_engine.begin() as connection:
        user_id = (await connection.execute(insert(users), user_rows(1))).inserted_primary_key
    assert user_id is not None

    async def get_one() -> None:
        async with units.reading() as uow:
            await uow.users.get_one(int(user_id[0]), View.BASIC)

    pid = await cancelled_while_locked(postgres_engine, observer, "users", get_one())
    assert await session_gone(observer, pid), "the connection of a cancelled read was kept"


async def test_a_statement_error_on_copy_keeps_its_connection(
    postgres_engine: AsyncEngine, observer: AsyncConnection
) -> None:
    # The server answered with an error: asyncpg read the reply in full, the connection
    # is in step and goes back to the pool.
    units = SqlUnitOfWorkFactory(postgres_engine)
    import_id = uuid.uuid4().hex
    rows = staged(2)
    async with units.writing() as uow:
        await uow.imports.open(import_id, utc_now())
        await uow.imports.stage(import_id, rows, utc_now())
        await uow.commit()
    before = await backend_pids(observer)
    with pytest.raises(StagedRepeatError):
        async with units.writing() as uow:
            await uow.imports.stage(import_id, rows, utc_now())
    assert await backend_pids(observer) == before


async def backend_pids(observer: AsyncConnection) -> set[int]:
    await observer.rollback()
    rows = await observer.execute(
        text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
    )
    return {int(row.pid) for row in rows}
