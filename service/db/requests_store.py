"""Remembered request_ids (API.md idempotency), per method."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.errors import KeyTakenError, execute
from service.db.tables import request_ids
from service.domain.ports import Remembered, RequestRecord


class RequestsStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def find(self, method: str, request_id: str, since: datetime) -> RequestRecord | None:
        row = (
            await self._connection.execute(
                select(
                    request_ids.c.fingerprint,
                    request_ids.c.resource_id,
                    request_ids.c.create_time,
                ).where(
                    request_ids.c.method == method,
                    request_ids.c.request_id == request_id,
                    request_ids.c.create_time >= since,
                )
            )
        ).first()
        if row is None:
            return None
        return RequestRecord(
            fingerprint=row.fingerprint, resource_id=row.resource_id, create_time=row.create_time
        )

    async def claim(
        self, method: str, request_id: str, fingerprint: str, now: datetime, since: datetime
    ) -> bool:
        key = and_(request_ids.c.method == method, request_ids.c.request_id == request_id)
        # An expired record of the same id would block the insert; it is forgotten.
        await self._connection.execute(
            delete(request_ids).where(key, request_ids.c.create_time < since)
        )
        try:
            await execute(
                self._connection,
                insert(request_ids).values(
                    method=method,
                    request_id=request_id,
                    fingerprint=fingerprint,
                    resource_id=None,
                    create_time=now,
                ),
            )
        except KeyTakenError:
            return False  # a concurrent call claimed it first
        return True

    async def attach(self, method: str, request_id: str, resource_id: int) -> None:
        await self._connection.execute(
            update(request_ids)
            .where(request_ids.c.method == method, request_ids.c.request_id == request_id)
            .values(resource_id=resource_id)
        )

    async def find_many(
        self, method: str, keys: Sequence[str], since: datetime
    ) -> dict[str, RequestRecord]:
        if not keys:
            return {}
        rows = await self._connection.execute(
            select(
                request_ids.c.request_id,
                request_ids.c.fingerprint,
                request_ids.c.resource_id,
                request_ids.c.create_time,
            ).where(
                request_ids.c.method == method,
                request_ids.c.request_id.in_(list(keys)),
                request_ids.c.create_time >= since,
            )
        )
        return {
            row.request_id: RequestRecord(
                fingerprint=row.fingerprint,
                resource_id=row.resource_id,
                create_time=row.create_time,
            )
            for row in rows
        }

    async def remember_many(
        self, method: str, records: Sequence[Remembered], now: datetime, since: datetime
    ) -> bool:
        if not records:
            return True
        # Expired records of the same ids would block the insert; they are forgotten.
        await self._connection.execute(
            delete(request_ids).where(
                request_ids.c.method == method,
                request_ids.c.request_id.in_([r.request_id for r in records]),
                request_ids.c.create_time < since,
            )
        )
        try:
            await execute(
                self._connection,
                insert(request_ids),
                [
                    {
                        "method": method,
                        "request_id": r.request_id,
                        "fingerprint": r.fingerprint,
                        "resource_id": r.resource_id,
                        "create_time": now,
                    }
                    for r in records
                ],
            )
        except KeyTakenError:
            return False
        return True

    async def purge(self, before: datetime) -> int:
        result = await self._connection.execute(
            delete(request_ids).where(request_ids.c.create_time < before)
        )
        return int(result.rowcount)
