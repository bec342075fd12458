"""The one place driver errors become domain errors."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import exc as sa_exc

from service.domain.errors import DatabaseUnavailableError

_PG_UNIQUE_VIOLATION = "23505"
_MYSQL_DUPLICATE_ENTRY = 1062
# PostgreSQL SQLSTATE classes that mean "cannot serve now, retry": connection
# exceptions, insufficient resources, operator intervention (shutdown).
_PG_UNAVAILABLE_CLASSES = ("08", "53", "57P")
# MariaDB client/server errors for a lost or refused connection or overload.
_MYSQL_UNAVAILABLE = {1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013, 2055}


def is_unique_violation(error: sa_exc.IntegrityError) -> bool:
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate is not None:
        return bool(sqlstate == _PG_UNIQUE_VIOLATION)
    cause = orig.__cause__ if orig is not None else None
    if isinstance(cause, sqlite3.IntegrityError) or isinstance(orig, sqlite3.IntegrityError):
        sqlite_error = cause if isinstance(cause, sqlite3.IntegrityError) else orig
        name = getattr(sqlite_error, "sqlite_errorname", "")
        return name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")
    args: tuple[object, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] == _MYSQL_DUPLICATE_ENTRY


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
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_PG_UNAVAILABLE_CLASSES)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in _MYSQL_UNAVAILABLE
    return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)


@asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    """Turns "the database is away" into DatabaseUnavailableError, chained."""
    try:
        yield
    except (sa_exc.SQLAlchemyError, OSError) as error:
        if is_unavailable(error):
            raise DatabaseUnavailableError() from error
        raise
