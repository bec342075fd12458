"""Reads and writes of users (and the addresses loaded with them)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db import keyset, stream_reads
from service.db.errors import Subject, execute
from service.db.raw import RawQuery, fetch_alone, fetch_rows, fetch_rows_alone
from service.db.tables import addresses, users
from service.domain.models import Address, NewUser, User, UserChanges, View
from service.domain.queries import UserFilter, UsersPageQuery
from service.domain.rows import RowBatch

_Row = Row[Any, Any, Any, Any, Any, Any]
_USER_COLUMNS = (
    users.c.id,
    users.c.name,
    users.c.email,
    users.c.create_time,
    users.c.update_time,
    users.c.version,
)
_ADDRESS_COLUMNS = (
    addresses.c.id,
    addresses.c.user_id,
    addresses.c.email,
    addresses.c.create_time,
    addresses.c.update_time,
    addresses.c.version,
)

# Hot-path statements, built once: SQLAlchemy then finds their compiled form by a
# memoized cache key instead of building and hashing a new select on every call.
# One id is `id = :id`: an expanding IN is re-rendered for every execution.
_ONE_ID = bindparam("id", type_=users.c.id.type)
_MANY_IDS = bindparam("ids", type_=users.c.id.type, expanding=True)
_BASIC_ONE = select(*_USER_COLUMNS).where(users.c.id == _ONE_ID)
_BASIC_MANY = select(*_USER_COLUMNS).where(users.c.id.in_(_MANY_IDS))
# FULL in one statement: each user once per address (or once with NULL address
# columns), ordered so that a user's addresses arrive together and by id.
_OWNED_COLUMNS = (
    addresses.c.id.label("address_id"),
    addresses.c.email.label("address_email"),
    addresses.c.create_time.label("address_create_time"),
    addresses.c.update_time.label("address_update_time"),
    addresses.c.version.label("address_version"),
)
_WITH_ADDRESSES = (
    select(*_USER_COLUMNS, *_OWNED_COLUMNS)
    .select_from(users.outerjoin(addresses, addresses.c.user_id == users.c.id))
    .order_by(users.c.id, addresses.c.id)
)
_FULL_ONE = _WITH_ADDRESSES.where(users.c.id == _ONE_ID)
_FULL_MANY = _WITH_ADDRESSES.where(users.c.id.in_(_MANY_IDS))
# GetUser on PostgreSQL: the same two statements for asyncpg directly (db/raw.py),
# rendered once; asyncpg prepares each once per connection and caches it.
_ONE_ON_ASYNCPG = {View.BASIC: RawQuery(_BASIC_ONE), View.FULL: RawQuery(_FULL_ONE)}
# Where each column sits in a row of _WITH_ADDRESSES (a prefix of it for _USER_COLUMNS):
# SQLAlchemy Rows and asyncpg Records are both read by these names, at tuple speed.
_AT = _ONE_ON_ASYNCPG[View.FULL].at
_ID, _NAME, _EMAIL = _AT["id"], _AT["name"], _AT["email"]
_CREATE_TIME, _UPDATE_TIME, _VERSION = _AT["create_time"], _AT["update_time"], _AT["version"]
_ADDRESS_ID, _ADDRESS_EMAIL = _AT["address_id"], _AT["address_email"]
_ADDRESS_CREATE_TIME, _ADDRESS_UPDATE_TIME = _AT["address_create_time"], _AT["address_update_time"]
_ADDRESS_VERSION = _AT["address_version"]
_FOR_UPDATE = select(*_USER_COLUMNS).where(users.c.id == _ONE_ID).with_for_update()
_INSERT_USER = insert(users)
# CreateUser's INSERT on PostgreSQL, for asyncpg directly (db/raw.py), like GetUser's read.
_NEW_USER_COLUMNS = ("name", "email", "email_domain", "create_time", "update_time", "version")
_INSERT_ON_ASYNCPG = RawQuery(
    insert(users)
    .values({column: bindparam(column) for column in _NEW_USER_COLUMNS})
    .returning(users.c.id),
    table=users,
)


async def read_user_alone(engine: AsyncEngine, user_id: int, view: View) -> User | None:
    """GetUser's read with no unit around it (raw.fetch_alone), on PostgreSQL: the same
    statement and the same user as UsersStore.get_one."""
    return _one_user(await fetch_alone(engine, _ONE_ON_ASYNCPG[view], id=user_id), view)


async def create_user_alone(engine: AsyncEngine, new: NewUser, now: datetime) -> User:
    """CreateUser of a user without addresses with no unit around it (raw.fetch_alone), on
    PostgreSQL: one INSERT, whole on its own (the change log's trigger records the change
    inside it); EmailTakenError if the email is taken."""
    if new.address_emails:
        raise ValueError("a user with addresses is more than one statement")
    rows = await fetch_alone(
        engine, _INSERT_ON_ASYNCPG, subject=Subject(email=new.email), **user_row(new, now)
    )
    return _as_stored(int(rows[0][0]), new, now)


async def users_page_alone(engine: AsyncEngine, query: UsersPageQuery) -> list[User]:
    """ListUsers' page of the BASIC view with no unit around it (raw.fetch_alone), on
    PostgreSQL: the same statement and users as UsersStore.list_page."""
    if query.view is not View.BASIC:
        raise ValueError("a FULL page is two statements")
    statement, values = keyset.users_page(_USER_COLUMNS, query, row_values=True)
    return [user_from(row) for row in await fetch_rows_alone(engine, statement, values)]


def _as_stored(user_id: int, new: NewUser, now: datetime) -> User:
    # Nothing the database chose but the id: the stored row is what was sent.
    return User(
        id=user_id,
        name=new.name,
        email=new.email,
        create_time=now,
        update_time=now,
        version=1,
        addresses=(),
    )


def _one_user(rows: Sequence[Any], view: View) -> User | None:
    if not rows:
        return None
    return user_from(rows[0]) if view is View.BASIC else _users_with_addresses(rows)[rows[0][_ID]]


class UsersStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def insert(self, new: NewUser, now: datetime) -> int:
        user_id = await self._insert_user(new, now)
        if new.address_emails:
            await execute(
                self._connection,
                insert(addresses),
                [
                    {
                        "user_id": user_id,
                        "email": email,
                        "create_time": now,
                        "update_time": now,
                        "version": 1,
                    }
                    for email in new.address_emails
                ],
            )
        return user_id

    async def _insert_user(self, new: NewUser, now: datetime) -> int:
        subject = Subject(email=new.email)
        if self._connection.dialect.name == "postgresql":
            rows = await _INSERT_ON_ASYNCPG.fetch(
                self._connection, subject=subject, **user_row(new, now)
            )
            return int(rows[0][0])
        result = await execute(self._connection, _INSERT_USER, user_row(new, now), subject=subject)
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    async def create(self, new: NewUser, now: datetime) -> User:
        user_id = await self.insert(new, now)
        if new.address_emails:
            # The addresses' ids come from the database: read them back.
            return (await self.get_many([user_id], View.FULL))[user_id]
        return _as_stored(user_id, new, now)

    async def get_one(self, user_id: int, view: View) -> User | None:
        """GetUser's read, the hottest call of the service.

        On PostgreSQL the statement goes to asyncpg directly, past SQLAlchemy's
        execution layer (compiled-cache lookup, execution context, result and type
        processing), whose work a call showed in the server's profile; the connection
        still comes from the engine's pool. asyncpg returns aware UTC datetimes already,
        what UtcDateTime makes of them on the other path.
        """
        if self._connection.dialect.name != "postgresql":
            return (await self.get_many([user_id], view)).get(user_id)
        return _one_user(await _ONE_ON_ASYNCPG[view].fetch(self._connection, id=user_id), view)

    async def get_many(self, ids: Sequence[int], view: View) -> dict[int, User]:
        # One statement whatever the count, FULL included (no N+1), so a read needs no
        # transaction to be consistent.
        parameters: dict[str, int | list[int]]
        if len(ids) == 1:
            statement = _BASIC_ONE if view is View.BASIC else _FULL_ONE
            parameters = {"id": ids[0]}
        else:
            statement = _BASIC_MANY if view is View.BASIC else _FULL_MANY
            parameters = {"ids": list(ids)}
        rows = (await self._connection.execute(statement, parameters)).all()
        if view is View.BASIC:
            return {row.id: user_from(row) for row in rows}
        return _users_with_addresses(rows)

    async def get_for_update(self, user_id: int) -> User | None:
        row = (await self._connection.execute(_FOR_UPDATE, {"id": user_id})).first()
        return None if row is None else user_from(row)

    async def update(self, user_id: int, changes: UserChanges, now: datetime) -> None:
        values: dict[str, Any] = {"update_time": now, "version": users.c.version + 1}
        if changes.name is not None:
            values["name"] = changes.name
        if changes.email is not None:
            values["email"] = changes.email
            values["email_domain"] = domain_of(changes.email)
        await execute(
            self._connection,
            update(users).where(users.c.id == user_id).values(values),
            subject=Subject(email=changes.email or ""),
        )

    async def count_addresses(self, user_id: int) -> int:
        count = await self._connection.scalar(
            select(func.count()).select_from(addresses).where(addresses.c.user_id == user_id)
        )
        return int(count or 0)

    async def delete(self, user_id: int) -> None:
        # Explicit rather than trusting ON DELETE CASCADE, which SQLite honours only
        # with foreign_keys switched on for the connection.
        await self._connection.execute(delete(addresses).where(addresses.c.user_id == user_id))
        await self._connection.execute(delete(users).where(users.c.id == user_id))

    async def list_page(self, query: UsersPageQuery) -> Sequence[User]:
        # PostgreSQL seeks its (key, id) index straight to (key, id) > (k, i), even inside
        # a long run of equal keys, only for a row comparison (see service.db.keyset).
        row_values = self._connection.dialect.name == "postgresql"
        statement, values = keyset.users_page(_USER_COLUMNS, query, row_values=row_values)
        rows = await fetch_rows(self._connection, statement, values)
        if query.view is View.BASIC or not rows:
            return [user_from(row) for row in rows]
        owned = await self._addresses_of([row[_ID] for row in rows])
        return [user_from(row, tuple(owned.get(row[_ID], ()))) for row in rows]

    async def stream_rows(
        self, user_filter: UserFilter, after_id: int, limit: int, *, with_addresses: bool
    ) -> RowBatch:
        return await stream_reads.read_batch(
            self._connection, user_filter, after_id, limit, with_addresses=with_addresses
        )

    async def _addresses_of(self, user_ids: Sequence[int]) -> dict[int, list[Address]]:
        """One query for the addresses of all the users: no N+1, whatever the page size."""
        owned: dict[int, list[Address]] = defaultdict(list)
        rows = await self._connection.execute(
            select(*_ADDRESS_COLUMNS)
            .where(addresses.c.user_id.in_(user_ids))
            .order_by(addresses.c.user_id, addresses.c.id)
        )
        for row in rows:
            owned[row.user_id].append(address_from(row))
        return owned


def domain_of(email: str) -> str:
    return email.rpartition("@")[2]


def user_row(new: NewUser, now: datetime) -> dict[str, Any]:
    """The users row of a new user, as CreateUser and BatchCreateUsers insert it."""
    return {
        "name": new.name,
        "email": new.email,
        "email_domain": domain_of(new.email),
        "create_time": now,
        "update_time": now,
        "version": 1,
    }


# SQLAlchemy Rows and asyncpg Records (GetUser on PostgreSQL) alike, read through _AT.
_AnyRow = Sequence[Any]


def user_from(row: _AnyRow, owned: tuple[Address, ...] | None = None) -> User:
    return User(
        id=row[_ID],
        name=row[_NAME],
        email=row[_EMAIL],
        create_time=row[_CREATE_TIME],
        update_time=row[_UPDATE_TIME],
        version=row[_VERSION],
        addresses=owned,
    )


def _users_with_addresses(rows: Sequence[_AnyRow]) -> dict[int, User]:
    """Folds the user-per-address rows of _WITH_ADDRESSES (ordered by user, address)."""
    found: dict[int, User] = {}
    for user_id, joined_rows in groupby(rows, key=itemgetter(_ID)):
        group = list(joined_rows)
        owned = tuple(
            Address(
                id=joined[_ADDRESS_ID],
                user_id=user_id,
                email=joined[_ADDRESS_EMAIL],
                create_time=joined[_ADDRESS_CREATE_TIME],
                update_time=joined[_ADDRESS_UPDATE_TIME],
                version=joined[_ADDRESS_VERSION],
            )
            # A user without addresses is one row of NULL address columns (LEFT JOIN).
            for joined in group
            if joined[_ADDRESS_ID] is not None
        )
        found[user_id] = user_from(group[0], owned)
    return found


def address_from(row: _Row) -> Address:
    return Address(
        id=row.id,
        user_id=row.user_id,
        email=row.email,
        create_time=row.create_time,
        update_time=row.update_time,
        version=row.version,
    )
