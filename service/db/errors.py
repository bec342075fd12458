"""The one place driver errors become domain errors.

A broken constraint is looked up by its name (tables.py names every one) in
CONSTRAINT_ERRORS, wherever a statement runs: `execute` for SQLAlchemy statements,
`constraint_error` for the driver's own (db/raw.py). "The database is away" becomes
DatabaseUnavailableError by SQLSTATE or MariaDB error number.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import PrimaryKeyConstraint, Table, UniqueConstraint
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable
from sqlalchemy.sql.dml import UpdateBase

from service.db.tables import metadata
from service.domain.errors import (
    AddressExistsError,
    DatabaseUnavailableError,
    EmailTakenError,
    StagedRepeatError,
    UserNotFoundError,
)

_MYSQL_DUPLICATE_ENTRY = 1062
_MYSQL_FOREIGN_KEY_ERRNOS = (1451, 1452)  # a parent row in use; no parent row
# PostgreSQL SQLSTATEs that mean "cannot serve now, retry": connection exceptions,
# insufficient resources, operator intervention (shutdown), serialization failures
# and deadlocks.
_PG_UNAVAILABLE_CLASSES = ("08", "53", "57P", "40001", "40P01")
# MariaDB client/server errors for a lost or refused connection, overload, lock
# wait timeout and deadlock.
_MYSQL_UNAVAILABLE = {1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013, 2055}
# MySQL client codes for a connection that was open and is gone: "server has gone away",
# "lost connection to server during query".
_MYSQL_CONNECTION_LOST = {2006, 2013}
# asyncpg used directly: the connection is gone, or its protocol is (a session the server
# ended while the pool held it: "another operation is in progress").
_ASYNCPG_CONNECTION_GONE = (asyncpg.InterfaceError, asyncpg.InternalClientError)


@dataclass(frozen=True, slots=True)
class Subject:
    """What a statement writes, named in the error a broken constraint becomes."""

    email: str = ""
    user_id: int = 0


class KeyTakenError(Exception):
    """A key stored already where the store expects to lose that race (a request_id
    claimed, a server key created, by a concurrent call)."""

    def __init__(self, constraint: str) -> None:
        super().__init__(constraint)
        self.constraint = constraint


# Every named constraint of tables.py; tests/db/test_constraint_errors.py breaks each.
CONSTRAINT_ERRORS: Mapping[str, Callable[[Subject], Exception]] = {
    "uq_users_email": lambda s: EmailTakenError(s.email),
    "uq_addresses_user_id_email": lambda s: AddressExistsError(s.user_id, s.email),
    "fk_addresses_user_id": lambda s: UserNotFoundError(s.user_id),
    "pk_request_ids": lambda s: KeyTakenError("pk_request_ids"),
    "pk_server_keys": lambda s: KeyTakenError("pk_server_keys"),
    "pk_imports": lambda s: KeyTakenError("pk_imports"),
    "pk_import_rows": lambda s: StagedRepeatError(),
    "uq_import_rows_import_id_email": lambda s: StagedRepeatError(),
    "uq_import_rows_import_id_request_id": lambda s: StagedRepeatError(),
    "pk_import_addresses": lambda s: StagedRepeatError(),
    # Only the sequencer writes positions, one round at a time: a defect if ever seen.
    "uq_user_changes_position": lambda s: KeyTakenError("uq_user_changes_position"),
}
NO_SUBJECT = Subject()


async def execute(
    connection: AsyncConnection,
    statement: Executable,
    parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    *,
    subject: Subject = NO_SUBJECT,
) -> CursorResult[Any]:
    """Runs a statement that may break a constraint; its error comes from the table."""
    try:
        return await connection.execute(statement, parameters)
    except sa_exc.IntegrityError as error:
        table = statement.table if isinstance(statement, UpdateBase) else None
        translated = constraint_error(error, table if isinstance(table, Table) else None, subject)
        if translated is None:
            raise
        raise translated from error


def constraint_error(
    error: BaseException, table: Table | None, subject: Subject
) -> Exception | None:
    """The error CONSTRAINT_ERRORS names for the constraint `error` broke; None if it
    broke none the table knows (the caller re-raises it: an INTERNAL, then)."""
    make = CONSTRAINT_ERRORS.get(constraint_of(error, table) or "")
    return None if make is None else make(subject)


def constraint_of(error: BaseException, table: Table | None) -> str | None:
    """The name of the constraint an integrity error broke, by backend: PostgreSQL names
    it; MariaDB names the key in its message (PRIMARY for a primary key); SQLite names
    the columns of a unique key, and nothing for a foreign key."""
    orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    for candidate in (orig, getattr(orig, "__cause__", None)):
        name = getattr(candidate, "constraint_name", None)
        if isinstance(name, str):
            return name
    errno = _mysql_errno(orig)
    if errno is not None:
        return _mysql_constraint(errno, str(getattr(orig, "args", ("", ""))[1]), table)
    sqlite_error = _sqlite_error(orig)
    if sqlite_error is not None:
        return _sqlite_constraint(str(sqlite_error), table)
    return None


_MYSQL_KEY = re.compile(r"for key '(?:[^']*\.)?([^'.]+)'$")
_MYSQL_FOREIGN_KEY = re.compile(r"CONSTRAINT `([^`]+)` FOREIGN KEY")
_SQLITE_COLUMNS = re.compile(r"^(?:UNIQUE|PRIMARY KEY) constraint failed: (.+)$")


def _mysql_constraint(errno: int, message: str, table: Table | None) -> str | None:
    if errno == _MYSQL_DUPLICATE_ENTRY and (key := _MYSQL_KEY.search(message)):
        if key.group(1) != "PRIMARY":
            return key.group(1)
        name = None if table is None else table.primary_key.name
        return name if isinstance(name, str) else None
    if errno in _MYSQL_FOREIGN_KEY_ERRNOS and (foreign := _MYSQL_FOREIGN_KEY.search(message)):
        return foreign.group(1)
    return None


def _sqlite_constraint(message: str, table: Table | None) -> str | None:
    if message == "FOREIGN KEY constraint failed":
        keys = [] if table is None else [k.name for k in table.foreign_key_constraints]
        return keys[0] if len(keys) == 1 and isinstance(keys[0], str) else None
    found = _SQLITE_COLUMNS.match(message)
    if found is None:
        return None
    qualified = [column.strip().split(".", 1) for column in found.group(1).split(",")]
    stored = metadata.tables.get(qualified[0][0])
    columns = [column[-1] for column in qualified]
    for constraint in () if stored is None else stored.constraints:
        if (
            isinstance(constraint, UniqueConstraint | PrimaryKeyConstraint)
            and [c.name for c in constraint.columns] == columns
            and isinstance(constraint.name, str)
        ):
            return constraint.name
    return None


def is_unavailable(error: BaseException) -> bool:
    """True for errors that mean the database cannot be reached or is overloaded."""
    # sa_exc.TimeoutError is the pool's "no connection free in time".
    if isinstance(error, OSError | sa_exc.TimeoutError):
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    return error.connection_invalidated or _driver_says_unavailable(error)


def _driver_says_unavailable(error: sa_exc.DBAPIError) -> bool:
    orig = error.orig
    errno = _mysql_errno(orig)
    if errno is not None:
        return errno in _MYSQL_UNAVAILABLE
    if _sqlite_error(orig) is not None:
        return isinstance(error, sa_exc.OperationalError)  # locked, busy, disk I/O
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_PG_UNAVAILABLE_CLASSES)
    if isinstance(orig, asyncpg.InternalClientError) or isinstance(
        orig.__cause__ if orig is not None else None, asyncpg.InternalClientError
    ):
        return True  # asyncpg's protocol out of step with a session that ended
    return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)


def _mysql_errno(orig: BaseException | None) -> int | None:
    # PyMySQL (under aiomysql) puts the server's error number first in args;
    # its sqlstate is the coarse ANSI class, too coarse to tell cases apart.
    if type(orig).__module__.startswith("pymysql"):
        args: tuple[object, ...] = getattr(orig, "args", ())
        if args and isinstance(args[0], int):
            return args[0]
    return None


def _sqlite_error(orig: BaseException | None) -> sqlite3.Error | None:
    for candidate in (orig, getattr(orig, "__cause__", None)):
        if isinstance(candidate, sqlite3.Error):
            return candidate
    return None


class DatabaseRefusedError(Exception):
    """The database answered but refused us (unknown database, bad credentials).

    Raised at startup only, where the operator reads the driver's own words on stderr;
    a client never sees them.
    """


@asynccontextmanager
async def refusal_reported() -> AsyncIterator[None]:
    try:
        yield
    except sa_exc.DBAPIError as error:
        if is_unavailable(error):
            raise
        raise DatabaseRefusedError(_driver_words(error.orig)) from error


def _driver_words(orig: BaseException | None) -> str:
    args: tuple[object, ...] = getattr(orig, "args", ())
    if _mysql_errno(orig) is not None and len(args) > 1:
        return str(args[1])
    return (str(orig) or type(orig).__name__).splitlines()[0]


@asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    """Turns "the database is away" into DatabaseUnavailableError, chained."""
    try:
        yield
    except (sa_exc.SQLAlchemyError, OSError) as error:
        if is_unavailable(error):
            raise DatabaseUnavailableError() from error
        raise


@asynccontextmanager
async def driver_errors_translated() -> AsyncIterator[None]:
    """As translated_errors, around asyncpg used directly (its errors are not wrapped)."""
    try:
        yield
    except (*_ASYNCPG_CONNECTION_GONE, OSError) as error:
        raise DatabaseUnavailableError() from error
    except asyncpg.PostgresError as error:
        if str(error.sqlstate).startswith(_PG_UNAVAILABLE_CLASSES):
            raise DatabaseUnavailableError() from error
        raise


def connection_lost(error: BaseException) -> bool:
    """Whether a driver error, or one it was raised from, says an open connection is
    gone: a socket error or end of stream, asyncpg's own, MySQL's "gone away"."""
    seen: BaseException | None = error
    for _ in range(10):  # a bounded walk: chains are short, and may loop
        if seen is None:
            return False
        if isinstance(seen, (OSError, EOFError, *_ASYNCPG_CONNECTION_GONE)):
            return True
        if _mysql_errno(seen) in _MYSQL_CONNECTION_LOST:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
