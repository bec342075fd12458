"""ImportUsers staging: rows wait in import_rows until one INSERT ... SELECT creates them.

Every method touches the `imports` row first, so staging, promoting and purging one
import take their locks in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    String,
    Table,
    and_,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.errors import KeyTakenError, execute
from service.db.raw import copy_records
from service.db.tables import (
    addresses,
    import_addresses,
    import_rows,
    imports,
    users,
)
from service.db.tables import request_ids as request_id_records
from service.db.types import UtcDateTime
from service.db.users_store import domain_of
from service.domain.errors import EmailTakenError
from service.domain.ports import ImportClashes, StagedClash, StagedUser

_CREATED = ("create_time", "update_time", "version")


class ImportStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def open(self, import_id: str, now: datetime) -> None:
        await self._connection.execute(
            insert(imports).values(import_id=import_id, create_time=now, heartbeat_time=now)
        )

    async def taken_emails(self, emails: Sequence[str]) -> set[str]:
        # A plain read: nothing on users is locked while the client is still sending.
        return await self._present(users.c.email, emails)

    async def clashes(
        self, import_id: str, emails: Sequence[str], request_ids: Sequence[str]
    ) -> ImportClashes:
        # Asked only for a chunk that failed, to name its first bad row. The id as a
        # subquery, so PostgreSQL plans without its value: statistics taken before this
        # import was staged say its id has no rows, and the probe of the staged emails
        # becomes a hash of all of them. Without the value, the planner counts rows per
        # import, as in the last import analysed.
        staged = import_rows.c.import_id == select(literal(import_id)).scalar_subquery()
        return ImportClashes(
            staged_emails=await self._present(import_rows.c.email, emails, staged),
            stored_emails=await self.taken_emails(emails),
            staged_request_ids=await self._present(import_rows.c.request_id, request_ids, staged),
        )

    async def _present(
        self, column: Column[str], values: Sequence[str], *where: ColumnElement[bool]
    ) -> set[str]:
        """Which of `values` the column holds, among the rows `where` picks."""
        if not values:
            return set()
        if self._connection.dialect.name == "postgresql":
            # A chunk's thousands of values as one array parameter, joined: each is one
            # probe of the (import_id, column) unique index while PostgreSQL thinks the
            # import large. (`= ANY(array)` got a generic plan that scanned every staged
            # row of the import: quadratic in its size.)
            given = (
                func.unnest(literal(list(values), ARRAY(String())))
                .table_valued("value")
                .render_derived()
            )
            statement = select(column).join_from(given, column.table, column == given.c.value)
        else:
            statement = select(column).where(column.in_(values))
        rows = await self._connection.execute(statement.where(*where))
        return {row[0] for row in rows}

    async def stage(self, import_id: str, rows: Sequence[StagedUser], now: datetime) -> bool:
        if not await self._touch(import_id, now):
            return False
        staged = [
            (
                import_id,
                row.stream_index,
                row.user.name,
                row.user.email,
                domain_of(row.user.email),
                row.request_id or None,
                row.user.fingerprint() if row.request_id else None,
            )
            for row in rows
        ]
        owned = [
            (import_id, row.stream_index, index, email)
            for row in rows
            for index, email in enumerate(row.user.address_emails)
        ]
        # A row that repeats an earlier one breaks a unique key of the staging tables:
        # StagedRepeatError (db/errors.py), as the caller checks rows only against users.
        await self._write(import_rows, staged)
        await self._write(import_addresses, owned)
        return True

    async def _write(self, table: Table, records: Sequence[tuple[Any, ...]]) -> None:
        """Rows in the table's column order, by COPY on PostgreSQL (a fraction of the
        cost of an INSERT, and the staging tables hold up to a million rows a call),
        else one executemany."""
        if not records:
            return
        columns = [column.name for column in table.columns]
        if self._connection.dialect.name != "postgresql":
            await execute(
                self._connection,
                insert(table),
                [dict(zip(columns, record, strict=True)) for record in records],
            )
            return
        await copy_records(self._connection, table, columns, records)

    async def promote(
        self, import_id: str, method: str, now: datetime, since: datetime
    ) -> int | StagedClash | None:
        if not await self._touch(import_id, now):
            return None
        try:
            # A savepoint keeps the transaction usable after a unique violation, so the
            # clashing row can be looked up.
            async with self._connection.begin_nested():
                await self._forget_expired_request_ids(import_id, method, since)
                return await self._create_staged(import_id, method, now)
        except (EmailTakenError, KeyTakenError):
            # Stored since the rows were staged: which row, and what it clashed with.
            clash = await self._first_clash(import_id, method, since)
            if clash is None:
                raise
            return clash

    async def discard(self, import_id: str) -> None:
        await self._connection.execute(delete(imports).where(imports.c.import_id == import_id))
        await self._delete_staged(import_id)

    async def stale(self, before: datetime) -> list[str]:
        rows = await self._connection.execute(
            select(imports.c.import_id).where(imports.c.heartbeat_time < before)
        )
        return [row.import_id for row in rows]

    async def discard_if_stale(self, import_id: str, before: datetime) -> bool:
        result = await self._connection.execute(
            delete(imports).where(
                imports.c.import_id == import_id, imports.c.heartbeat_time < before
            )
        )
        if result.rowcount != 1:
            return False
        await self._delete_staged(import_id)
        return True

    async def _touch(self, import_id: str, now: datetime) -> bool:
        result = await self._connection.execute(
            update(imports).where(imports.c.import_id == import_id).values(heartbeat_time=now)
        )
        return bool(result.rowcount == 1)

    async def _delete_staged(self, import_id: str) -> None:
        await self._connection.execute(
            delete(import_addresses).where(import_addresses.c.import_id == import_id)
        )
        await self._connection.execute(
            delete(import_rows).where(import_rows.c.import_id == import_id)
        )

    async def _forget_expired_request_ids(
        self, import_id: str, method: str, since: datetime
    ) -> None:
        # An expired record of a staged request_id would block recording it again.
        staged_ids = select(import_rows.c.request_id).where(
            import_rows.c.import_id == import_id, import_rows.c.request_id.is_not(None)
        )
        await self._connection.execute(
            delete(request_id_records).where(
                request_id_records.c.method == method,
                request_id_records.c.create_time < since,
                request_id_records.c.request_id.in_(staged_ids),
            )
        )

    async def _create_staged(self, import_id: str, method: str, now: datetime) -> int:
        stamp = (literal(now, UtcDateTime()), literal(now, UtcDateTime()), literal(1))
        staged = import_rows.c.import_id == import_id
        # Ids follow the stream's order: one statement, in the order the rows were sent.
        await execute(
            self._connection,
            insert(users).from_select(
                ["name", "email", "email_domain", *_CREATED],
                select(import_rows.c.name, import_rows.c.email, import_rows.c.email_domain, *stamp)
                .where(staged)
                .order_by(import_rows.c.stream_index),
            ),
        )
        # Joined by email: the unique index makes it the user just created from the row.
        created = import_rows.join(users, users.c.email == import_rows.c.email)
        await execute(
            self._connection,
            insert(addresses).from_select(
                ["user_id", "email", *_CREATED],
                select(users.c.id, import_addresses.c.email, *stamp)
                .select_from(
                    import_addresses.join(
                        created,
                        and_(
                            import_rows.c.import_id == import_addresses.c.import_id,
                            import_rows.c.stream_index == import_addresses.c.stream_index,
                        ),
                    )
                )
                .where(import_addresses.c.import_id == import_id)
                .order_by(import_addresses.c.stream_index, import_addresses.c.address_index),
            ),
        )
        await execute(
            self._connection,
            insert(request_id_records).from_select(
                ["method", "request_id", "fingerprint", "resource_id", "create_time"],
                select(
                    literal(method),
                    import_rows.c.request_id,
                    import_rows.c.fingerprint,
                    users.c.id,
                    literal(now, UtcDateTime()),
                )
                .select_from(created)
                .where(staged, import_rows.c.request_id.is_not(None)),
            ),
        )
        count = await self._connection.scalar(
            select(func.count()).select_from(import_rows).where(staged)
        )
        return int(count or 0)

    async def _first_clash(
        self, import_id: str, method: str, since: datetime
    ) -> StagedClash | None:
        # Locking reads see the latest committed rows, also under MariaDB's REPEATABLE READ.
        by_email = (
            await self._connection.execute(
                select(import_rows.c.stream_index, import_rows.c.email)
                .select_from(import_rows.join(users, users.c.email == import_rows.c.email))
                .where(import_rows.c.import_id == import_id)
                .order_by(import_rows.c.stream_index)
                .limit(1)
                .with_for_update(read=True)
            )
        ).first()
        by_request_id = (
            await self._connection.execute(
                select(import_rows.c.stream_index, import_rows.c.email, import_rows.c.request_id)
                .select_from(
                    import_rows.join(
                        request_id_records,
                        and_(
                            request_id_records.c.method == method,
                            request_id_records.c.request_id == import_rows.c.request_id,
                        ),
                    )
                )
                .where(
                    import_rows.c.import_id == import_id, request_id_records.c.create_time >= since
                )
                .order_by(import_rows.c.stream_index)
                .limit(1)
                .with_for_update(read=True)
            )
        ).first()
        clashes = []
        if by_email is not None:
            clashes.append(StagedClash(by_email.stream_index, by_email.email, ""))
        if by_request_id is not None:
            clashes.append(
                StagedClash(
                    by_request_id.stream_index, by_request_id.email, by_request_id.request_id
                )
            )
        return min(clashes, key=lambda clash: clash.stream_index, default=None)
