"""A session the database ends while its connection idles in the pool (a restart, a
failover, an operator's KILL) costs one WARNING line, never an ERROR with a traceback,
and the next checkout gets a working connection."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.db.engine import create_engine
from service.db.errors import driver_errors_translated, is_unavailable
from service.db.migrate import upgrade
from service.db.uow import SqlUnitOfWorkFactory
from service.domain.errors import DatabaseUnavailableError
from service.domain.models import NewUser, utc_now
from tests.backends import fresh_database, selected_backends

SESSION_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
KILL = {"postgresql": "SELECT pg_terminate_backend({})", "mysql": "KILL {}"}


async def end_session(url: str, backend: str, session: int) -> None:
    """Ends `session` from a connection of its own, as an operator or a restart would."""
    killer = create_async_engine(url)
    try:
        async with killer.connect() as connection:
            await connection.execute(text(KILL[backend].format(int(session))))
    finally:
        await killer.dispose()


async def lose_a_pooled_connection(engine: AsyncEngine, url: str, backend: str) -> None:
    async with engine.connect() as connection:
        session = (await connection.execute(text(SESSION_ID[backend]))).scalar_one()
        await connection.commit()
        await end_session(url, backend, session)
        # The server's goodbye reaches the idle socket a moment later; a checkout in that
        # moment is the outage test's business, not this one's.
        await asyncio.sleep(0.3)
    # Leaving the block returned the dead connection to the pool, which resets it.


@pytest.mark.parametrize(
    "backend", [b for b in ("postgresql", "mysql") if b in selected_backends()]
)
async def test_a_lost_pooled_connection_is_one_warning_and_replaced(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sqlalchemy.pool")
    async with fresh_database(backend, tmp_path) as url:
        engine = create_engine(url)
        try:
            await lose_a_pooled_connection(engine, url, backend)
            async with engine.connect() as connection:
                assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
        finally:
            await engine.dispose()

    pool_records = [r for r in caplog.records if r.name.startswith("sqlalchemy.pool")]
    assert [r for r in pool_records if r.levelno >= logging.ERROR or r.exc_info] == []
    if backend == "mysql":
        # MariaDB's rollback-on-return reaches the dead socket: the one line it costs.
        [warning] = [r for r in pool_records if r.levelno == logging.WARNING]
        assert warning.getMessage().startswith("a pooled connection was lost"), warning
        assert "Lost connection" in warning.getMessage()


async def test_asyncpg_out_of_step_with_an_ended_session_is_unavailable() -> None:
    """What a checkout of a connection the server ended a moment ago raises: retryable."""
    lost = asyncpg.InternalClientError("cannot switch to state 12; another operation (2)")
    assert is_unavailable(sa_exc.InternalError("SELECT 1", {}, lost))
    with pytest.raises(DatabaseUnavailableError):
        async with driver_errors_translated():
            raise lost


@pytest.mark.parametrize("backend", [b for b in ("postgresql",) if b in selected_backends()])
async def test_a_write_unit_whose_session_ended_is_unavailable_at_its_raw_first_statement(
    backend: str, tmp_path: Path
) -> None:
    """CreateUser's INSERT goes to asyncpg directly, and the unit's BEGIN with it: a
    session ended while the unit holds its connection is DatabaseUnavailableError (a
    retryable UNAVAILABLE), not the adapter's wrapper of the driver's error (INTERNAL),
    and the next unit gets a working connection."""
    async with fresh_database(backend, tmp_path) as url:
        engine = create_engine(url)
        try:
            await upgrade(engine)
            units = SqlUnitOfWorkFactory(engine)
            with pytest.raises(DatabaseUnavailableError):
                async with units.writing() as uow:
                    await end_every_other_session(url)
                    await asyncio.sleep(0.3)  # the server's goodbye reaches the socket
                    await uow.users.create(NewUser(name="Lost", email="lost@x.test"), utc_now())
            async with units.writing() as uow:
                created = await uow.users.create(
                    NewUser(name="Next", email="next@x.test"), utc_now()
                )
                await uow.commit()
            assert created.id > 0
        finally:
            await engine.dispose()


async def end_every_other_session(url: str) -> None:
    killer = create_async_engine(url)
    try:
        async with killer.connect() as connection:
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        await killer.dispose()
