"""Database URL -> one AsyncEngine per process, tuned per dialect."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.log import InstanceLogger
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool

from service.db.cancellation import release_sqlite_writer
from service.db.errors import connection_lost
from service.logs import quiet_lost_connections

SUPPORTED_DRIVERS = {
    "postgresql+asyncpg": "PostgreSQL",
    "mysql+aiomysql": "MariaDB/MySQL",
    "mariadb+aiomysql": "MariaDB/MySQL",
    "sqlite+aiosqlite": "SQLite",
}


# An unreachable host fails a connection attempt after this long, not after the driver's
# default (60 s for asyncpg), so a call fails with UNAVAILABLE rather than hanging.
CONNECT_TIMEOUT_SECONDS = 5
POOL_TIMEOUT_SECONDS = 10


class BadDatabaseUrlError(ValueError):
    """The URL cannot name a supported database; the message is for the operator."""


def parse_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise BadDatabaseUrlError(
            f"database URL {safe_url(raw)!r} is not a URL; expected e.g. "
            "postgresql+asyncpg://user:password@host:5432/dbname"
        ) from None
    if url.drivername not in SUPPORTED_DRIVERS:
        raise BadDatabaseUrlError(
            f"database URL scheme {url.drivername!r} is not supported; use one of "
            + ", ".join(f"{d}://" for d in SUPPORTED_DRIVERS)
        )
    if url.drivername.startswith("sqlite") and not url.database:
        raise BadDatabaseUrlError("an SQLite URL needs a file, e.g. sqlite+aiosqlite:///users.db")
    if url.drivername.startswith(("mysql", "mariadb")) and "charset" not in url.query:
        # Emoji in names need 4-byte UTF-8; MariaDB's "utf8" is 3-byte.
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


def safe_url(raw: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return raw.rsplit("@", maxsplit=1)[-1] if "@" in raw else raw


def create_engine(raw_url: str, *, pool_size: int = 20, pooler: str = "none") -> AsyncEngine:
    """`pool_size`: the connections the pool lends at most, each kept once opened.
    `pooler` "pgbouncer": the URL leads to PgBouncer in transaction mode, which hands
    each transaction a server connection of its own choosing: no prepared statement may
    outlive a transaction, so neither asyncpg nor SQLAlchemy keep any."""
    url = parse_url(raw_url)
    options: dict[str, Any] = {
        "pool_size": pool_size,
        # No overflow: a connection opened at a peak and closed once it passes is opened
        # again at the next, each time a new server process and session set-up; under
        # CreateUser load at 64 calls in flight that was one new session every 32 calls.
        "max_overflow": 0,
        # A call that waits this long for a free connection is UNAVAILABLE (overloaded).
        "pool_timeout": POOL_TIMEOUT_SECONDS,
    }
    if url.get_backend_name() == "postgresql":
        options["connect_args"] = {"timeout": CONNECT_TIMEOUT_SECONDS}
        if pooler == "pgbouncer":
            options["connect_args"]["statement_cache_size"] = 0
            # SQLAlchemy prepares every statement under a name, and a named statement
            # stays on the server connection PgBouncer lent, for ever. An unnamed one is
            # replaced by the next; it is safe only inside a transaction (one server
            # connection from Parse to Execute), so every unit is one through a pooler
            # (uow.SqlUnitOfWorkFactory).
            options["connect_args"]["prepared_statement_name_func"] = _unnamed
            url = url.update_query_dict({"prepared_statement_cache_size": "0"})
    if url.get_backend_name() == "sqlite":
        # SQLite allows one writer; one shared connection serialises writers instead
        # of failing them with "database is locked".
        options = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 30}
    elif url.get_backend_name() in ("mysql", "mariadb"):
        # MariaDB drops idle connections after wait_timeout (8 h by default).
        options["pool_recycle"] = 3600
        # A database restart leaves every pooled connection dead; a ping at checkout
        # replaces one quietly instead of failing the call that drew it (API.md: the
        # service recovers by itself). aiomysql notices a closed socket only when it
        # next reads, so MariaDB keeps the ping (one round trip per call).
        options["pool_pre_ping"] = True
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        # PostgreSQL's default level; under InnoDB's REPEATABLE READ, gap locks turn
        # concurrent inserts of one key (request ids, emails) into deadlocks.
        options["isolation_level"] = "READ COMMITTED"
    engine = create_async_engine(url, **options)
    quiet_lost_connections(_logger_name(engine.sync_engine.pool.logger), connection_lost)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "handle_error", release_sqlite_writer)
    elif url.get_backend_name() == "postgresql":
        event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    return engine


def _logger_name(logger: logging.Logger | InstanceLogger) -> str:
    return logger.logger.name if isinstance(logger, InstanceLogger) else logger.name


def _unnamed() -> str:
    return ""


def pool_capacity(engine: AsyncEngine) -> int:
    """How many connections the pool lends at most (its size plus its overflow)."""
    pool = engine.sync_engine.pool
    if isinstance(pool, QueuePool):
        return pool.size() + max(0, pool._max_overflow)  # QueuePool has no public getter
    return 1


def _replace_if_closed(
    _dbapi_connection: Any, _record: ConnectionPoolEntry, proxy: PoolProxiedConnection
) -> None:
    """A database restart leaves every pooled connection dead (API.md: the service
    recovers by itself). PostgreSQL ends its sessions with a message and a closed
    socket, which asyncpg reads while the connection idles in the pool, so a dead one
    is known at checkout without pool_pre_ping's three round trips on every call;
    raising DisconnectionError makes the pool connect afresh in its place."""
    connection = proxy.driver_connection
    if connection is not None and connection.is_closed():
        raise DisconnectionError("the pooled connection was closed by the server")


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
