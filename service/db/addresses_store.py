"""Reads and writes of addresses; every write also touches the owning user.

All address writes go through here, so a change feed of users (API.md WatchUsers: an
address change is a TYPE_UPDATED of its user) can be recorded in `_touch_user` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.errors import Subject, execute
from service.db.tables import addresses, users
from service.db.users_store import address_from
from service.domain.models import Address

_COLUMNS = (
    addresses.c.id,
    addresses.c.user_id,
    addresses.c.email,
    addresses.c.create_time,
    addresses.c.update_time,
    addresses.c.version,
)


class AddressesStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, address_id: int) -> Address | None:
        row = (
            await self._connection.execute(select(*_COLUMNS).where(addresses.c.id == address_id))
        ).first()
        return None if row is None else address_from(row)

    async def get_for_update(self, address_id: int) -> Address | None:
        row = (
            await self._connection.execute(
                select(*_COLUMNS).where(addresses.c.id == address_id).with_for_update()
            )
        ).first()
        return None if row is None else address_from(row)

    async def insert(self, user_id: int, email: str, now: datetime) -> int:
        result = await execute(
            self._connection,
            insert(addresses).values(
                user_id=user_id, email=email, create_time=now, update_time=now, version=1
            ),
            subject=Subject(email=email, user_id=user_id),
        )
        assert result.inserted_primary_key is not None
        await self._touch_user(user_id, now)
        return int(result.inserted_primary_key[0])

    async def update_email(self, address_id: int, user_id: int, email: str, now: datetime) -> None:
        await execute(
            self._connection,
            update(addresses)
            .where(addresses.c.id == address_id)
            .values(email=email, update_time=now, version=addresses.c.version + 1),
            subject=Subject(email=email, user_id=user_id),
        )
        await self._touch_user(user_id, now)

    async def delete(self, address_id: int, user_id: int, now: datetime) -> None:
        await self._connection.execute(delete(addresses).where(addresses.c.id == address_id))
        await self._touch_user(user_id, now)

    async def list_page(self, user_id: int, after_id: int | None, limit: int) -> Sequence[Address]:
        statement = select(*_COLUMNS).where(addresses.c.user_id == user_id)
        if after_id is not None:
            statement = statement.where(addresses.c.id > after_id)
        rows = await self._connection.execute(statement.order_by(addresses.c.id).limit(limit))
        return [address_from(row) for row in rows]

    async def _touch_user(self, user_id: int, now: datetime) -> None:
        # API.md: every address write changes its user's etag and update_time, in the
        # same transaction.
        await self._connection.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(version=users.c.version + 1, update_time=now)
        )
