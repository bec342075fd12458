"""Statements cut short (a call cancelled, a deadline passed, a connection lost): their
connection never serves another call, and on SQLite the writer is free again at once.

SQLAlchemy discards the connection of a statement it ran that was cut short; on SQLite,
`release_sqlite_writer` first stops the statement and rolls back. Where asyncpg is used
directly (raw.py), `driver_used` discards the connection itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util.concurrency import await_, in_greenlet

from service.db.errors import driver_errors_translated

# SQLSTATE classes after which PostgreSQL has ended the session: connection exception,
# operator intervention (shutdown, terminated backend).
_PG_SESSION_ENDED = ("08", "57P")


def _cut_short(error: BaseException) -> bool:
    """The statement did not run to its end: its call was cancelled or timed out."""
    return isinstance(error, TimeoutError) or not isinstance(error, Exception)


def _out_of_step(error: BaseException) -> bool:
    """Whether asyncpg, used directly, may be left out of step with the server: after a
    statement cut short, a lost connection or any failure of its own. An error the server
    answered with (a unique violation) leaves the connection in step and usable."""
    if isinstance(error, asyncpg.PostgresError):
        return str(error.sqlstate).startswith(_PG_SESSION_ENDED)
    return True


@asynccontextmanager
async def driver_of(connection: AsyncConnection) -> AsyncIterator[Any]:
    """The driver's own connection under `connection`, inside its transaction; its
    errors translated as SQLAlchemy's are. A statement cut short can leave asyncpg's
    connection mid-protocol (a COPY half sent, a reply unread, an operation still in
    progress): that connection is discarded, never handed to the next call."""
    pooled = await _pooled(connection)
    driver = pooled.driver_connection
    assert driver is not None
    async with driver_used(connection.invalidate):
        await _begin_if_due(connection, pooled)
        yield driver


@asynccontextmanager
async def driver_used(discard: Callable[[], Awaitable[object]]) -> AsyncIterator[None]:
    """Around statements sent to asyncpg directly: its errors translated as SQLAlchemy's
    are, and after a failure that may have left the connection out of step, `discard`
    (the connection's invalidation) awaited, shielded: the call may be being cancelled,
    and the discard must still happen."""
    async with driver_errors_translated():
        try:
            yield
        except BaseException as error:
            if _out_of_step(error):
                await asyncio.shield(discard())
            raise


async def _pooled(connection: AsyncConnection) -> PoolProxiedConnection:
    """The pool's connection under `connection`. While the unit holds it, that is an
    attribute; `get_raw_connection` would hop through a greenlet to read it (it may have
    to reconnect an invalidated one, which a live unit's never is)."""
    sync = connection.sync_connection
    if sync is not None and not (sync.closed or sync.invalidated):
        return sync.connection
    return await connection.get_raw_connection()


async def _begin_if_due(connection: AsyncConnection, pooled: PoolProxiedConnection) -> None:
    """Sends the unit's BEGIN if it is not sent yet. SQLAlchemy's asyncpg adapter sends
    it lazily, before the first statement it runs itself; a statement sent to asyncpg
    directly first (CreateUser's INSERT) would otherwise run in autocommit, outside the
    unit's transaction, and stay committed whatever the unit does next."""
    adapter: Any = pooled.dbapi_connection
    if not connection.in_transaction() or adapter.autocommit or adapter._transaction is not None:
        return
    try:
        await adapter._start_transaction()
    except Exception as error:
        # The adapter raises its DB-API wrapper of the driver's error (a refusal, a lost
        # connection, asyncpg's InternalClientError on a connection cut mid-reply): the
        # driver's own goes on, judged as any raised here (unavailable? out of step?).
        if isinstance(error.__cause__, Exception):
            raise error.__cause__ from None
        raise


def closes_at_once(connection: AsyncConnection) -> bool:
    """Whether closing `connection` sends the database nothing, so that nothing can cut
    the close short: PostgreSQL with no transaction begun on the driver (SQLAlchemy's
    asyncpg adapter rolls back only a transaction it began, and returning a connection to
    the pool is no I/O). MariaDB's and SQLite's adapters roll back on every return."""
    sync = connection.sync_connection
    if connection.dialect.name != "postgresql" or sync is None:
        return False
    if sync.closed or sync.invalidated:
        return False
    adapter: Any = sync.connection.dbapi_connection
    return adapter is not None and adapter._transaction is None


def release_sqlite_writer(context: ExceptionContext) -> None:
    """SQLAlchemy's handle_error hook on SQLite: a statement cut short is stopped and its
    transaction rolled back before SQLAlchemy discards the connection.

    aiosqlite runs statements on the connection's own thread, and a cancelled await does
    not stop them. SQLAlchemy then closes the connection while the statement's cursor
    still holds it (an INSERT of many rows, a SELECT not read to its end): SQLite keeps
    such a connection alive, with its transaction and the write lock, until the cursor
    is garbage collected, and meanwhile every other write waits out busy_timeout and
    fails. So the statement is stopped, its cursor closed and the transaction rolled back
    first; the connection is discarded afterwards as before.
    """
    connection = context.connection
    if connection is None or connection.invalidated or not _cut_short(context.original_exception):
        return
    if not in_greenlet():
        return  # not under asyncio (the garbage collector's cleanup): nothing to wait on
    pooled = connection.connection
    dbapi, driver = pooled.dbapi_connection, pooled.driver_connection
    if dbapi is None or driver is None:
        return
    # A step that fails leaves the rest to the close that follows (the connection is
    # discarded anyway) and must not replace the exception the call ends with:
    # SQLAlchemy raises whatever this hook raises instead.
    with contextlib.suppress(Exception):
        # sqlite3's interrupt works from any thread: the statement stops now.
        await_(driver.interrupt())
    # These two queue on the connection's thread behind the statement, in this order.
    with contextlib.suppress(Exception):
        cursor = _cursor_of(context)
        if cursor is not None:
            # Resets the statement: an interrupt lasts while any statement is open.
            cursor.close()
    with contextlib.suppress(Exception):
        dbapi.rollback()


def _cursor_of(context: ExceptionContext) -> DBAPICursor | None:
    # ExceptionContext.cursor is documented, but SQLAlchemy 2.1 leaves that slot unset
    # (reading it raises AttributeError); the execution context holds the same cursor.
    cursor: DBAPICursor | None = getattr(context, "cursor", None)
    if cursor is None and context.execution_context is not None:
        cursor = context.execution_context.cursor
    return cursor
