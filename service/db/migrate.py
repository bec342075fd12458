"""Brings a database's schema to the newest Alembic revision.

Alembic, with what it imports, is a large share of an idle server's memory, kept for the
life of the process once loaded (BENCHMARKS.md). `serve` therefore reads the stored
revision first (startup.py) and loads Alembic only when there is something to migrate; `migrate`
always runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.errors import refusal_reported, translated_errors

if TYPE_CHECKING:
    from alembic.config import Config

# The newest revision in migrations/versions; tests/db/test_schema.py checks it against
# Alembic's own head, so a new migration cannot be forgotten here.
HEAD = "0006"
_MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config  # noqa: PLC0415 - loaded only to migrate (module doc)

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    from alembic import command  # noqa: PLC0415 - loaded only to migrate (module doc)

    async with refusal_reported(), translated_errors(), engine.begin() as connection:
        await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))


async def stored_revision(engine: AsyncEngine) -> str | None:
    """The revision recorded in the database; None for a database never migrated."""
    async with refusal_reported(), translated_errors(), engine.connect() as connection:
        return await connection.run_sync(_read_revision)


def _read_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if revision is None else str(revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    from alembic import command  # noqa: PLC0415 - loaded only to migrate (module doc)

    async with translated_errors(), engine.begin() as connection:
        await connection.run_sync(lambda sync: command.downgrade(alembic_config(sync), revision))
