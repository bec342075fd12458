"""Migrations up and down, and the database itself enforcing uniqueness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import migrate
from service.db.engine import create_engine
from service.db.errors import constraint_of
from service.db.tables import users
from service.startup import migrate_unless_stopped
from tests.backends import fresh_database

TABLES = {"users", "addresses", "request_ids"}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(database_url, pool_size=2)
    yield created
    await created.dispose()


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_migrations_go_down_and_up_again(backend: str, tmp_path: Path) -> None:
    # A database of its own: the shared one serves the other tests meanwhile.
    async with fresh_database(backend, tmp_path) as url:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
            assert await table_names(engine) >= TABLES
            await migrate.downgrade(engine, "base")
            assert not TABLES & await table_names(engine)
            await migrate.upgrade(engine)
            assert await table_names(engine) >= TABLES
        finally:
            await engine.dispose()


def test_head_names_alembics_newest_revision() -> None:
    # `serve` skips Alembic when the database is at HEAD: a stale HEAD would skip a migration.
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    assert scripts.get_current_head() == migrate.HEAD


async def test_migrating_at_start_migrates_a_new_database_and_then_finds_nothing_to_do(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        engine = create_engine(url)
        try:
            assert await migrate.stored_revision(engine) is None
            await migrate_unless_stopped(engine, None)
            assert await migrate.stored_revision(engine) == migrate.HEAD
            assert await table_names(engine) >= TABLES
            await migrate.downgrade(engine, "0002")
            assert await migrate.stored_revision(engine) == "0002"
            await migrate_unless_stopped(engine, None)
            assert await migrate.stored_revision(engine) == migrate.HEAD
        finally:
            await engine.dispose()


async def test_unique_index_rejects_a_duplicate_email_without_any_pre_check(
    running: object, engine: AsyncEngine
) -> None:
    now = datetime.now(UTC)
    row = {
        "name": "Raw",
        "email": f"raw-{now.timestamp()}@example.com",
        "email_domain": "example.com",
        "create_time": now,
        "update_time": now,
        "version": 1,
    }
    async with engine.begin() as connection:
        await connection.execute(insert(users).values(row))
    with pytest.raises(IntegrityError) as raised:
        async with engine.begin() as connection:
            await connection.execute(insert(users).values(row))
    assert constraint_of(raised.value, users) == "uq_users_email"
