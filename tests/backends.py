"""Test databases: one fresh database per backend per run, dropped after."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

BACKENDS = ("sqlite", "postgresql", "mysql")
ADMIN_URLS = {
    "postgresql": os.environ.get(
        "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    ),
    "mysql": os.environ.get("TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/mysql"),
}


def selected_backends() -> tuple[str, ...]:
    """All three unless TEST_BACKENDS narrows it (a local convenience; CI runs all)."""
    wanted = os.environ.get("TEST_BACKENDS", "")
    if not wanted or os.environ.get("CI") == "true":
        return BACKENDS
    return tuple(b for b in BACKENDS if b in wanted.split(","))


class BackendUnreachableError(RuntimeError):
    pass


@asynccontextmanager
async def fresh_database(backend: str, workdir: Path) -> AsyncIterator[str]:
    """Creates an empty database, yields its URL, drops it."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / f'users-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"users_test_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(ADMIN_URLS[backend])
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        try:
            async with admin.connect() as connection:
                await connection.execute(text(f"CREATE DATABASE {name}"))
        except Exception as error:
            raise BackendUnreachableError(
                f"{backend} at {admin_url.render_as_string(hide_password=True)} is unreachable "
                f"({type(error).__name__}: {error}); run `make dbs` or set TEST_*_URL"
            ) from error
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            async with admin.connect() as connection:
                if backend == "postgresql":
                    await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                else:
                    await connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        finally:
            await admin.dispose()
