"""Reads and writes of users (and the addresses loaded with them)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db import keyset
from service.db.errors import is_unique_violation
from service.db.tables import addresses, users
from service.domain.errors import EmailTakenError
from service.domain.listing import UsersPageQuery
from service.domain.models import Address, NewUser, User, UserChanges, View

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


class UsersStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def insert(self, new: NewUser, now: datetime) -> int:
        try:
            result = await self._connection.execute(
                insert(users).values(
                    name=new.name,
                    email=new.email,
                    email_domain=domain_of(new.email),
                    create_time=now,
                    update_time=now,
                    version=1,
                )
            )
        except IntegrityError as error:
            if is_unique_violation(error):
                raise EmailTakenError(new.email) from error
            raise
        assert result.inserted_primary_key is not None
        user_id = int(result.inserted_primary_key[0])
        if new.address_emails:
            await self._connection.execute(
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

    async def get_many(self, ids: Sequence[int], view: View) -> dict[int, User]:
        rows = (
            await self._connection.execute(select(*_USER_COLUMNS).where(users.c.id.in_(ids)))
        ).all()
        if view is View.BASIC or not rows:
            return {row.id: user_from(row) for row in rows}
        # One query for all addresses of all users: constant, whatever the count (no N+1).
        owned: dict[int, list[Address]] = defaultdict(list)
        address_rows = await self._connection.execute(
            select(*_ADDRESS_COLUMNS)
            .where(addresses.c.user_id.in_([row.id for row in rows]))
            .order_by(addresses.c.user_id, addresses.c.id)
        )
        for address_row in address_rows:
            owned[address_row.user_id].append(address_from(address_row))
        return {row.id: user_from(row, tuple(owned.get(row.id, ()))) for row in rows}

    async def get_for_update(self, user_id: int) -> User | None:
        row = (
            await self._connection.execute(
                select(*_USER_COLUMNS).where(users.c.id == user_id).with_for_update()
            )
        ).first()
        return None if row is None else user_from(row)

    async def update(self, user_id: int, changes: UserChanges, now: datetime) -> None:
        values: dict[str, Any] = {"update_time": now, "version": users.c.version + 1}
        if changes.name is not None:
            values["name"] = changes.name
        if changes.email is not None:
            values["email"] = changes.email
            values["email_domain"] = domain_of(changes.email)
        try:
            await self._connection.execute(
                update(users).where(users.c.id == user_id).values(values)
            )
        except IntegrityError as error:
            if is_unique_violation(error) and changes.email is not None:
                raise EmailTakenError(changes.email) from error
            raise

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
        statement = keyset.users_page(select(*_USER_COLUMNS), query, row_values=row_values)
        rows = (await self._connection.execute(statement)).all()
        if query.view is View.BASIC or not rows:
            return [user_from(row) for row in rows]
        owned = await self._addresses_of([row.id for row in rows])
        return [user_from(row, tuple(owned.get(row.id, ()))) for row in rows]

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


def user_from(row: _Row, owned: tuple[Address, ...] | None = None) -> User:
    return User(
        id=row.id,
        name=row.name,
        email=row.email,
        create_time=row.create_time,
        update_time=row.update_time,
        version=row.version,
        addresses=owned,
    )


def address_from(row: _Row) -> Address:
    return Address(
        id=row.id,
        user_id=row.user_id,
        email=row.email,
        create_time=row.create_time,
        update_time=row.update_time,
        version=row.version,
    )
