"""A unit of work: one connection, one transaction (or one statement in autocommit)."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from service.db.addresses_store import AddressesStore
from service.db.bulk_store import BulkStore
from service.db.errors import is_unavailable, translated_errors
from service.db.import_store import ImportStore
from service.db.requests_store import RequestsStore
from service.db.users_store import UsersStore
from service.domain.errors import DatabaseUnavailableError


class SqlUnitOfWork:
    users: UsersStore
    addresses: AddressesStore
    requests: RequestsStore
    bulk: BulkStore
    imports: ImportStore

    def __init__(self, engine: AsyncEngine, autocommit: AsyncEngine | None = None) -> None:
        self._engine = engine
        self._autocommit = autocommit  # the same pool, for units of one statement
        self._connection: AsyncConnection | None = None
        self._transaction: AsyncTransaction | None = None
        self._one_statement = False

    def for_one_statement(self) -> Self:
        self._one_statement = True
        return self

    async def __aenter__(self) -> Self:
        async with translated_errors():
            if self._one_statement and self._autocommit is not None:
                # One statement is atomic and consistent by itself: in autocommit it is
                # one round trip instead of BEGIN, the statement and COMMIT or ROLLBACK.
                self._connection = await self._autocommit.connect()
            else:
                self._connection = await self._engine.connect()
                try:
                    self._transaction = await self._connection.begin()
                except BaseException:
                    await self._connection.close()
                    raise
        self.users = UsersStore(self._connection)
        self.addresses = AddressesStore(self._connection)
        self.requests = RequestsStore(self._connection)
        self.bulk = BulkStore(self._connection)
        self.imports = ImportStore(self._connection)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection, self._transaction = self._connection, None, None
        assert connection is not None
        # Closing rolls back whatever was not committed and returns the connection to
        # the pool; shielded so a cancelled call (client gone, deadline) cannot leak it.
        async with translated_errors():
            await asyncio.shield(connection.close())
        if exc is not None and is_unavailable(exc):
            raise DatabaseUnavailableError() from exc

    async def commit(self) -> None:
        if self._transaction is None:
            return  # one statement in autocommit: durable once it returned
        async with translated_errors():
            await self._transaction.commit()


class SqlUnitsOfWork:
    """The process's UnitOfWorkFactory: a new unit per call, every one on one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # The engine's own pool, its connections in autocommit while checked out.
        # PostgreSQL only: asyncpg switches without a round trip; MariaDB would SET the
        # level both ways and SQLite would hop to its thread, costing more than BEGIN.
        self._autocommit = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else None
        )

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._engine, self._autocommit)
