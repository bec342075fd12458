"""Multi-row inserts of users and their addresses (BatchCreateUsers)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.errors import execute
from service.db.tables import addresses, users
from service.db.users_store import user_row
from service.domain.errors import EmailTakenError
from service.domain.models import NewUser


class BulkStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def insert_many(self, news: Sequence[NewUser], now: datetime) -> list[int]:
        if not news:
            return []
        try:
            # A savepoint keeps the transaction usable after a unique violation, so the
            # taken email can be looked up (PostgreSQL refuses every statement otherwise).
            async with self._connection.begin_nested():
                # RETURNING the email too: ids are matched by email, not by row order,
                # which no backend promises for a multi-row INSERT ... RETURNING.
                rows = await execute(
                    self._connection,
                    insert(users).returning(users.c.id, users.c.email),
                    [user_row(new, now) for new in news],
                )
                id_of = {row.email: int(row.id) for row in rows}
        except EmailTakenError as error:
            # Which of the rows: the first whose email is stored (API.md names its index).
            taken = await self._taken_emails([new.email for new in news])
            for new in news:
                if new.email in taken:
                    raise EmailTakenError(new.email) from error.__cause__
            raise
        ids = [id_of[new.email] for new in news]
        owned = [
            {
                "user_id": user_id,
                "email": email,
                "create_time": now,
                "update_time": now,
                "version": 1,
            }
            for user_id, new in zip(ids, news, strict=True)
            for email in new.address_emails
        ]
        if owned:
            await self._connection.execute(insert(addresses), owned)
        return ids

    async def _taken_emails(self, emails: Sequence[str]) -> set[str]:
        # A locking read sees the latest committed rows, also under MariaDB's
        # REPEATABLE READ, where a plain read would see the transaction's snapshot.
        rows = await self._connection.execute(
            select(users.c.email).where(users.c.email.in_(emails)).with_for_update(read=True)
        )
        return {row.email for row in rows}
