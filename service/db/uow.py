"""Units of work: one pooled connection each; a writing unit is always one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from service.db.addresses_store import AddressesStore
from service.db.bulk_store import BulkStore
from service.db.cancellation import closes_at_once
from service.db.errors import is_unavailable, translated_errors
from service.db.import_store import ImportStore
from service.db.raw import announces_statements
from service.db.replicas import ReplicaSet
from service.db.requests_store import RequestsStore
from service.db.users_store import (
    UsersStore,
    create_user_alone,
    read_user_alone,
    users_page_alone,
)
from service.domain.errors import DatabaseUnavailableError
from service.domain.models import NewUser, User, View
from service.domain.queries import UsersPageQuery


class SqlUnitOfWork:
    """A unit on one pooled connection. A writing unit is one transaction; a reading
    unit on PostgreSQL runs in autocommit (no BEGIN and COMMIT round trips: under READ
    COMMITTED each statement sees its own snapshot either way)."""

    users: UsersStore
    addresses: AddressesStore
    requests: RequestsStore
    bulk: BulkStore
    imports: ImportStore

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        writes: bool = True,
        transactional: bool = True,
        fallback: SqlUnitOfWork | None = None,
        on_fallback: Callable[[BaseException], None] | None = None,
    ) -> None:
        """`fallback`: the unit to become if `engine` cannot be reached (a read replica
        gone: its reads go to the primary, no error); `on_fallback` hears why."""
        self._engine = engine
        self._writes = writes
        self._transactional = transactional
        self._fallback = fallback
        self._on_fallback = on_fallback
        self._connection: AsyncConnection | None = None
        self._transaction: AsyncTransaction | None = None

    async def _connect(self) -> AsyncConnection:
        try:
            async with translated_errors():
                return await self._engine.connect()
        except DatabaseUnavailableError as error:
            fallback = self._fallback
            if fallback is None:
                raise
            if self._on_fallback is not None:
                self._on_fallback(error.__cause__ or error)
            self._engine, self._transactional = fallback._engine, fallback._transactional
            self._fallback = None
            async with translated_errors():
                return await self._engine.connect()

    async def __aenter__(self) -> Self:
        self._connection = await self._connect()
        async with translated_errors():
            if self._transactional:
                try:
                    self._transaction = await self._connection.begin()
                except BaseException:
                    await asyncio.shield(self._connection.close())
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
        # the pool; shielded so a cancelled call (client gone, deadline) cannot leak it,
        # unless the close has nothing to wait for (the shield's task costs a call more
        # than the close itself).
        async with translated_errors():
            if closes_at_once(connection):
                await connection.close()
            else:
                await asyncio.shield(connection.close())
        if exc is not None and is_unavailable(exc):
            raise DatabaseUnavailableError() from exc

    async def commit(self) -> None:
        if not self._writes:
            raise RuntimeError("a reading unit has nothing to commit")
        assert self._transaction is not None
        async with translated_errors():
            await self._transaction.commit()


class SqlUnitOfWorkFactory:
    """The process's UnitOfWorkFactory: a new unit per use case, every one on one pool."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        autocommit_reads: bool = True,
        replicas: ReplicaSet | None = None,
    ) -> None:
        """`autocommit_reads` False: reading units are transactions too (behind a
        transaction pooler, a statement outside one may not reach one server connection)."""
        self._engine = engine
        self._replicas = replicas
        # The same pool, its connections in autocommit while checked out. PostgreSQL
        # only: asyncpg switches without a round trip; MariaDB would SET the level both
        # ways and SQLite would hop to its thread, costing more than the BEGIN saved.
        self._autocommit = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql" and autocommit_reads
            else None
        )

    def reading(self, *, stale_ok: bool = False) -> SqlUnitOfWork:
        primary = self._primary_reading()
        replica = self._replicas.pick() if stale_ok and self._replicas else None
        if replica is None:
            return primary
        replicas = self._replicas
        assert replicas is not None
        return SqlUnitOfWork(
            replica.engine,
            writes=False,
            transactional=primary._transactional,
            fallback=primary,
            on_fallback=lambda error: replicas.failed(replica, error),
        )

    async def read_user(self, user_id: int, view: View) -> User | None:
        if self._alone():
            return await read_user_alone(self._engine, user_id, view)
        async with self._primary_reading() as uow:
            return await uow.users.get_one(user_id, view)

    async def read_users_page(self, query: UsersPageQuery) -> Sequence[User]:
        # A BASIC page is one statement; with read replicas, a unit picks one.
        if query.view is View.BASIC and self._replicas is None and self._alone():
            return await users_page_alone(self._engine, query)
        async with self.reading(stale_ok=True) as uow:
            return await uow.users.list_page(query)

    def _alone(self) -> bool:
        """Whether a statement that needs no unit runs on a connection taken for it alone
        (raw.fetch_alone): on PostgreSQL without a pooler (autocommit), and while no
        listener waits for statement events (they are handed a unit's Connection)."""
        return self._autocommit is not None and not announces_statements(self._engine)

    def _primary_reading(self) -> SqlUnitOfWork:
        if self._autocommit is None:
            return SqlUnitOfWork(self._engine, writes=False)
        return SqlUnitOfWork(self._autocommit, writes=False, transactional=False)

    def writing(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._engine)

    async def create_user(self, new: NewUser, now: datetime) -> User:
        # A user without addresses on PostgreSQL in autocommit: one INSERT on a connection
        # taken for it alone; otherwise a writing unit's transaction.
        if not new.address_emails and self._alone():
            return await create_user_alone(self._engine, new, now)
        async with self.writing() as uow:
            created = await uow.users.create(new, now)
            await uow.commit()
        return created
