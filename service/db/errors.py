"""The one place driver errors become domain errors."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy import exc as sa_exc

from service.domain.errors import DatabaseUnavailableError

_PG_UNIQUE_VIOLATION = "23505"
_MYSQL_DUPLICATE_ENTRY = 1062
# PostgreSQL SQLSTATEs that mean "cannot serve now, retry": connection exceptions,
# insufficient resources, operator intervention (shutdown), serialization failures
# and deadlocks.
_PG_UNAVAILABLE_CLASSES = ("08", "53", "57P", "40001", "40P01")
# MariaDB client/server errors for a lost or refused connection, overload, lock
# wait timeout and deadlock.
_MYSQL_UNAVAILABLE = {1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013, 2055}


def is_unique_violation(error: BaseException) -> bool:
    """A SQLAlchemy IntegrityError for a unique key, or asyncpg's own error where the
    driver is used directly (COPY)."""
    orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    errno = _mysql_errno(orig)
    if errno is not None:
        return errno == _MYSQL_DUPLICATE_ENTRY
    sqlite_error = _sqlite_error(orig)
    if sqlite_error is not None:
        name = getattr(sqlite_error, "sqlite_errorname", "")
        return name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")
    return getattr(orig, "sqlstate", None) == _PG_UNIQUE_VIOLATION


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
    except (asyncpg.InterfaceError, OSError) as error:  # the connection is gone
        raise DatabaseUnavailableError() from error
    except asyncpg.PostgresError as error:
        if str(error.sqlstate).startswith(_PG_UNAVAILABLE_CLASSES):
            raise DatabaseUnavailableError() from error
        raise
