"""The change log in the database (migration 0005), as domain.ports.ChangeLog.

Writers never touch it: triggers on users append a change (position NULL) in the
writing transaction. The sequencer numbers committed changes: under the row lock of
change_log_state, it reads the unnumbered changes it can see (committed ones only) in id
order and gives them the positions after last_position. Rounds from every process take
that lock in turn and commit before the next round starts, so a position, once readable,
never gets a new neighbour below it. The argument is in the README, "How the change
stream works".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.config import Settings
from service.db.engine import parse_url
from service.db.errors import translated_errors
from service.db.tables import change_log_state, user_changes
from service.db.types import UtcDateTime
from service.domain.models import Change, ChangeType, User, utc_now
from service.domain.ports import ChangeLogState

log = logging.getLogger("users.changes")

NOTIFY_CHANNEL = "users_changes"  # the triggers of migration 0005 notify it
RELISTEN_SECONDS = 5.0  # after a failed LISTEN connection, poll this long before the next

_c = user_changes.c
_READ_COLUMNS = (
    _c.position,
    _c.change_type,
    _c.user_id,
    _c.name,
    _c.email,
    _c.email_domain,
    _c.create_time,
    _c.update_time,
    _c.version,
    _c.sequenced_time,
)
_UNNUMBERED = select(_c.id).where(_c.position.is_(None)).order_by(_c.id).limit(bindparam("limit"))
_STATE = select(change_log_state.c.last_position, change_log_state.c.purged_through).where(
    change_log_state.c.id == 1
)
# The sequencer's lock, held until the round commits: the row lock of change_log_state
# on PostgreSQL and MariaDB (SELECT ... FOR UPDATE), the writer lock on SQLite (an UPDATE).
_LOCK = text("UPDATE change_log_state SET last_position = last_position WHERE id = 1")
_ADVANCE = text("UPDATE change_log_state SET last_position = :last WHERE id = 1")

# Positions base + 1, base + 2, ... for the ids, in the order listed (ascending).
_NUMBER = {
    "postgresql": text(
        "UPDATE user_changes AS c SET position = :base + v.ord, sequenced_time = :now "
        "FROM unnest(CAST(:ids AS BIGINT[])) WITH ORDINALITY AS v(id, ord) WHERE c.id = v.id"
    ),
    "mysql": text(
        "UPDATE user_changes AS c JOIN JSON_TABLE(:ids, '$[*]' COLUMNS "
        "(ord FOR ORDINALITY, id BIGINT PATH '$')) AS v ON c.id = v.id "
        "SET c.position = :base + v.ord, c.sequenced_time = :now"
    ),
    "sqlite": text(
        "UPDATE user_changes SET position = :base + v.key + 1, sequenced_time = :now "
        "FROM json_each(:ids) AS v WHERE user_changes.id = v.value"
    ),
}


class SqlChangeLog:
    def __init__(self, engine: AsyncEngine, listen_url: str | None = None) -> None:
        """`engine`: the log's own, disposed of by close(). `listen_url`: a PostgreSQL URL
        to LISTEN on, so writes wake the feed at once."""
        self._engine = engine
        dialect = engine.dialect.name
        self._number = _NUMBER["mysql" if dialect == "mariadb" else dialect]
        self._ids_as_json = dialect != "postgresql"
        # SELECT ... FOR UPDATE takes the lock and reads in one statement; SQLite has no
        # row locks (its writer lock comes with the first write).
        self._locks_rows = dialect != "sqlite"
        self._notify = dialect == "postgresql"
        self._listen_url = listen_url if dialect == "postgresql" else None
        self._listener: Any = None  # an asyncpg connection, while listening
        self._woken = asyncio.Event()
        self._listen_after = 0.0  # monotonic time of the next LISTEN attempt
        self.signalled = False

    async def state(self) -> ChangeLogState:
        async with translated_errors(), self._engine.connect() as connection:
            row = (await connection.execute(_STATE)).one()
        return ChangeLogState(int(row.last_position), int(row.purged_through))

    async def sequence(self, limit: int) -> int:
        async with translated_errors():
            # Most rounds find nothing: a plain read first, no lock taken.
            async with self._engine.connect() as connection:
                waiting = (await connection.execute(_UNNUMBERED, {"limit": 1})).first()
            if waiting is None:
                return 0
            async with self._engine.begin() as connection:
                return await self._number_committed(connection, limit)

    async def _number_committed(self, connection: AsyncConnection, limit: int) -> int:
        # Read under the lock: a round of another process that committed meanwhile is
        # seen, and its changes are numbered already.
        if self._locks_rows:
            state = (await connection.execute(_STATE.with_for_update())).one()
        else:
            await connection.execute(_LOCK)
            state = (await connection.execute(_STATE)).one()
        last = int(state.last_position)
        ids = [int(i) for i in (await connection.execute(_UNNUMBERED, {"limit": limit})).scalars()]
        if not ids:
            return 0
        parameters = {
            "base": last,
            "ids": json.dumps(ids) if self._ids_as_json else ids,
            "now": utc_now(),
        }
        await connection.execute(
            self._number.bindparams(bindparam("now", type_=UtcDateTime())), parameters
        )
        await connection.execute(_ADVANCE, {"last": last + len(ids)})
        if self._notify:
            # Other processes' feeds read the numbered changes as soon as this commits.
            await connection.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
        return len(ids)

    async def read(self, after: int, through: int, email_domain: str) -> list[Change]:
        query = (
            select(*_READ_COLUMNS)
            .where(_c.position > after, _c.position <= through)
            .order_by(_c.position)
        )
        if email_domain:
            query = query.where(_c.email_domain == email_domain)
        async with translated_errors(), self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [_change_of(row) for row in rows]

    async def purge(self, before: datetime, limit: int) -> int:
        async with translated_errors(), self._engine.begin() as connection:
            await connection.execute(_LOCK)
            purged = int((await connection.execute(_STATE)).one().purged_through)
            window = (
                select(_c.position)
                .where(
                    _c.position > purged,
                    _c.position <= purged + limit,
                    _c.sequenced_time < before,
                )
                .order_by(_c.position.desc())
                .limit(1)
            )
            through = (await connection.execute(window)).scalar()
            if through is None:
                return 0
            deleted = await connection.execute(
                user_changes.delete().where(_c.position > purged, _c.position <= through)
            )
            await connection.execute(
                change_log_state.update()
                .where(change_log_state.c.id == 1)
                .values(purged_through=through)
            )
        return int(deleted.rowcount)

    async def wait_for_changes(self, seconds: float) -> None:
        if (
            self._listen_url is not None
            and self._listener is None
            and time.monotonic() >= self._listen_after
        ):
            await self._listen()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._woken.wait()
        self._woken.clear()

    async def _listen(self) -> None:
        """LISTEN on a connection of its own (a pooled one would be lent to calls)."""
        assert self._listen_url is not None
        try:
            listener = await asyncpg.connect(self._listen_url, timeout=5)
            await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
        except Exception as error:  # any failure to listen means: poll
            # Polling still delivers every change, only later; the next wait tries again.
            if self.signalled:
                log.warning("change notifications lost (%s); polling until back", error)
            self.signalled = False
            self._listen_after = time.monotonic() + RELISTEN_SECONDS
            return
        listener.add_termination_listener(self._on_listener_lost)
        self._listener = listener
        self.signalled = True

    def _on_notify(self, *_: object) -> None:
        self._woken.set()

    def _on_listener_lost(self, *_: object) -> None:
        self._listener = None
        self.signalled = False
        self._woken.set()

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.close(), 2)
        await self._engine.dispose()


def _change_of(row: Any) -> Change:
    change_type = ChangeType(row.change_type)
    user = User(
        id=row.user_id,
        name=row.name,
        email=row.email,
        create_time=row.create_time,
        update_time=row.update_time,
        version=row.version,
    )
    commit_time = row.sequenced_time if change_type is ChangeType.DELETED else row.update_time
    return Change(row.position, change_type, user, row.email_domain, commit_time)


def listen_url_of(settings: Settings) -> str | None:
    """The asyncpg DSN to LISTEN on: PostgreSQL itself, never through a transaction
    pooler (LISTEN belongs to a session). None: the change feed polls."""
    raw = settings.database_url
    if settings.database_pooler != "none":
        raw = settings.direct_database_url
    if not raw:
        return None
    url = parse_url(raw)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
