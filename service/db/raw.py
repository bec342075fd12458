"""The one way past SQLAlchemy's execution layer, for the statements where its work per
call shows, on PostgreSQL: GetUser's read, CreateUser's INSERT, ListUsers' page,
StreamUsers' batches, and ImportUsers' COPY into staging.

A Core statement is rendered once for asyncpg (`RawQuery`); it runs on the unit's own
pooled connection, inside its transaction, through `cancellation.driver_of` (the one rule
for a statement cut short: the connection is discarded) and `errors.driver_errors_translated`;
its broken constraints become domain errors by the one table of db/errors.py; and it
is announced to the engine's `before_cursor_execute` and `after_cursor_execute`
listeners like any statement SQLAlchemy sends, so whatever counts or traces statements
sees these too (the end is announced whether the statement succeeded or failed).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import asyncpg
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.expression import ReturnsRows, Select
from sqlalchemy.util.concurrency import greenlet_spawn

from service.db.cancellation import driver_of, driver_used
from service.db.errors import (
    NO_SUBJECT,
    Subject,
    constraint_error,
    driver_errors_translated,
    translated_errors,
)

_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]


class RawQuery:
    """A statement that returns rows (a SELECT, an INSERT ... RETURNING), rendered once
    to asyncpg's SQL ($1, $2 ...), its rows read by name. Its values go to asyncpg as
    they are: no type of SQLAlchemy's processes them (asyncpg takes and returns aware
    datetimes for timestamptz, what UtcDateTime makes of them on the other path)."""

    def __init__(self, statement: ReturnsRows, *, table: Table | None = None) -> None:
        """`table`: the table a write goes to, whose constraints its errors name."""
        compiled = statement.compile(dialect=_DIALECT)
        self.sql = str(compiled)
        self._parameters = tuple(compiled.positiontup or ())
        self.table = table
        # Column name -> position in a row, so callers read rows by name at list speed.
        # (An unlabelled expression gets a key of SQLAlchemy's making, unused by callers.)
        self.at: Mapping[str, int] = {
            key: index for index, key in enumerate(statement.exported_columns.keys())
        }

    def arguments(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The statement's values in its parameters' order."""
        return tuple(values[name] for name in self._parameters)

    async def fetch(
        self, connection: AsyncConnection, *, subject: Subject = NO_SUBJECT, **values: Any
    ) -> Sequence[Any]:
        """The statement's rows; a constraint it breaks raises the error that the table of
        db/errors.py names for it, about `subject`."""
        arguments = self.arguments(values)
        with _announced(connection, self.sql, arguments), _constraints_named(self.table, subject):
            async with driver_of(connection) as driver:
                rows: Sequence[Any] = await driver.fetch(self.sql, *arguments)
        return rows


@functools.lru_cache(maxsize=512)
def _rendered(statement: Select[Any]) -> RawQuery:
    """The RawQuery of a statement built once and kept (a page shape of keyset's, a
    stream's filter): rendered once, however often it runs."""
    return RawQuery(statement)


async def fetch_rows(
    connection: AsyncConnection, statement: Select[Any], values: Mapping[str, Any]
) -> Sequence[Any]:
    """A kept statement's rows, read by position: through asyncpg directly on
    PostgreSQL, through SQLAlchemy elsewhere."""
    if connection.dialect.name == "postgresql":
        return await _rendered(statement).fetch(connection, **values)
    rows: Sequence[Any] = (await connection.execute(statement, values)).all()
    return rows


def announces_statements(engine: AsyncEngine) -> bool:
    """Whether any listener waits for the engine's statement events (tracing, a test
    recording statements): they are handed SQLAlchemy's Connection, which `fetch_alone`
    does without."""
    dispatch = engine.sync_engine.dispatch
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)


async def fetch_alone(
    engine: AsyncEngine, query: RawQuery, *, subject: Subject = NO_SUBJECT, **values: Any
) -> Sequence[Any]:
    """A statement that needs no unit (a read; a write that is whole in one statement):
    its rows, on a pooled connection taken for it alone and used through asyncpg
    directly, in autocommit. What a unit adds around one statement (SQLAlchemy's
    Connection, its characteristics, a greenlet hop each way) is most of such a call's
    database work in Python. Constraints are named as by RawQuery.fetch. PostgreSQL
    only, and only while `announces_statements` is False."""
    arguments = query.arguments(values)
    pooled = await _checked_out(engine)
    try:
        driver = pooled.driver_connection
        assert driver is not None
        with _constraints_named(query.table, subject):
            async with driver_used(lambda: greenlet_spawn(pooled.invalidate)):
                rows: Sequence[Any] = await driver.fetch(query.sql, *arguments)
    finally:
        # Back to the pool: no I/O on PostgreSQL with no transaction begun, so nothing
        # can cut it short (uow.py's close, the same).
        await greenlet_spawn(pooled.close)
    return rows


async def fetch_rows_alone(
    engine: AsyncEngine, statement: Select[Any], values: Mapping[str, Any]
) -> Sequence[Any]:
    """A kept statement's rows (as fetch_rows) through `fetch_alone`."""
    return await fetch_alone(engine, _rendered(statement), **values)


async def _checked_out(engine: AsyncEngine) -> PoolProxiedConnection:
    """A connection from the engine's pool. A connect that fails there comes as the
    DB-API's own error, not wrapped as through a Connection: it is judged by the
    driver's error under it (a refusal, "the database system is starting up")."""
    dbapi_error: Any = engine.dialect.loaded_dbapi.Error
    try:
        async with translated_errors():
            return await engine.raw_connection()
    except dbapi_error as error:
        cause = error.__cause__
        async with driver_errors_translated():
            raise (cause if isinstance(cause, Exception) else error) from None


async def copy_records(
    connection: AsyncConnection,
    table: Table,
    columns: Sequence[str],
    records: Iterable[tuple[Any, ...]],
) -> None:
    """asyncpg's COPY of `records` into `table`, part of the unit's transaction."""
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    with _announced(connection, statement, ()), _constraints_named(table, NO_SUBJECT):
        async with driver_of(connection) as driver:
            await driver.copy_records_to_table(table.name, records=records, columns=list(columns))


@contextmanager
def _constraints_named(table: Table | None, subject: Subject) -> Iterator[None]:
    """A constraint broken by asyncpg directly becomes the domain error it would become
    through SQLAlchemy; one the table does not know goes on as it is (an INTERNAL)."""
    try:
        yield
    except asyncpg.IntegrityConstraintViolationError as error:
        translated = constraint_error(error, table, subject)
        if translated is None:
            raise
        raise translated from error


@contextmanager
def _announced(
    connection: AsyncConnection, statement: str, parameters: tuple[Any, ...]
) -> Iterator[None]:
    """The statement told to the engine's cursor listeners before it runs and after it
    ended, succeeded or not, as SQLAlchemy tells them of its own."""
    sync = connection.sync_connection
    if sync is None or not _listened(sync):
        yield
        return
    if sync.dispatch.before_cursor_execute:
        sync.dispatch.before_cursor_execute(sync, None, statement, parameters, None, False)
    try:
        yield
    finally:
        if sync.dispatch.after_cursor_execute:
            sync.dispatch.after_cursor_execute(sync, None, statement, parameters, None, False)


def _listened(sync: Connection) -> bool:
    """Whether any statement listener is registered: SQLAlchemy's own test before it
    dispatches statement events. Asking the dispatcher of a connection from an engine
    with execution options (the reading units') builds a joined listener each time."""
    return sync._has_events or sync.engine._has_events
