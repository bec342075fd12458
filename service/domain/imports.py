"""ImportUsers: up to 1,000,000 rows a call, staged as they arrive, created all at once.

Rows are checked and staged in chunks, each in a short transaction of its own, so
nothing on users is locked while the client is still sending; the staged rows stay
invisible until one final transaction creates them all. Any failure, a silent client
or a client that goes away discards the staging: nothing of the call stays.

request_id in an import: as in BatchCreateUsers, remembered per row under
"ImportUsers". A retried import skips the rows its earlier attempt created (same id,
same body) and counts them in created_count, so a retry answers as the original did.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from service.domain.bulk import RowInput
from service.domain.errors import (
    AlreadyExistsError,
    FieldViolation,
    ImportExpiredError,
    ImportIdleError,
    InvalidArgumentError,
    NotFoundError,
)
from service.domain.import_rows import (
    METHOD,
    CheckedChunk,
    checked_chunk,
    clash_error,
    sorted_rows,
)
from service.domain.models import utc_now
from service.domain.ports import ImportClashes, StagedClash, UnitOfWorkFactory
from service.domain.users import REQUEST_ID_TTL

IMPORT_MAX = 1_000_000  # rows a call (API.md)
MESSAGE_MAX = 1000  # rows a message (API.md)
IDLE_SECONDS = 60.0  # API.md: a client silent for longer is aborted
CHUNK = 1000  # rows checked and staged per transaction
# A trickling client still marks its import alive this often, so the purge of imports
# abandoned for STALE_AFTER (housekeeping) never takes a live one.
HEARTBEAT_SECONDS = 10.0
STALE_AFTER = timedelta(hours=1)


async def import_users(
    new_uow: UnitOfWorkFactory,
    messages: AsyncIterator[Sequence[RowInput]],
    idle_seconds: float = IDLE_SECONDS,
) -> int:
    """Returns created_count: rows created now plus rows replayed by request_id."""
    staging = _Staging(new_uow)
    try:
        while (rows := await _received(messages, idle_seconds, staging.writing)) is not None:
            await staging.add(rows)
        await staging.flush()
        return await staging.finish()
    finally:
        # Shielded: a client that went away cancels this call, but not the cleanup.
        await asyncio.shield(staging.discard())


async def _received(
    messages: AsyncIterator[Sequence[RowInput]],
    idle_seconds: float,
    writing: asyncio.Task[None] | None,
) -> Sequence[RowInput] | None:
    """The client's next message, None after its last one.

    The staging write in flight goes on meanwhile; if it fails, its error is raised at
    once, not when the client next sends: it names an earlier row than any to come.
    """
    receiving = asyncio.ensure_future(anext(messages, None))
    try:
        try:
            async with asyncio.timeout(idle_seconds):
                await _arrived_or_failed(receiving, writing)
        except TimeoutError:
            raise ImportIdleError(idle_seconds) from None
        if writing is not None and writing.done():
            writing.result()
        return receiving.result()
    finally:
        receiving.cancel()


async def _arrived_or_failed(
    receiving: asyncio.Future[Sequence[RowInput] | None], writing: asyncio.Task[None] | None
) -> None:
    if writing is not None:
        await asyncio.wait((receiving, writing), return_when=asyncio.FIRST_COMPLETED)
        if writing.done() and writing.exception() is not None:
            return
    await asyncio.wait((receiving,))


class _Staging:
    """Checks rows in chunks and writes each chunk to staging in a transaction of its own.

    At most one write is in flight: while it waits on the database, the next message is
    received and its rows checked (pure Python). Writes run in stream order, so the
    first bad row of the stream is still the one reported.
    """

    def __init__(self, new_uow: UnitOfWorkFactory) -> None:
        self._uow = new_uow
        self._import_id = uuid.uuid4().hex
        self._opened = False  # the imports row is committed
        # A write began: it may have committed even if it was cancelled since.
        self._began = False
        self._next_index = 0  # stream position of the next row to arrive
        self._buffer: list[RowInput] = []
        self._buffer_start = 0
        self._replayed = 0
        self._last_write = time.monotonic()
        self.writing: asyncio.Task[None] | None = None  # the write in flight, if any

    async def add(self, rows: Sequence[RowInput]) -> None:
        # Rows before an oversized message or past the limit are checked first:
        # the first bad row of the stream is the one reported.
        if len(rows) > MESSAGE_MAX:
            await self.flush()
            raise InvalidArgumentError(
                [
                    FieldViolation(
                        "requests",
                        f"a message carries at most {MESSAGE_MAX} rows; the one starting at "
                        f"requests[{self._next_index}] has {len(rows)}",
                    )
                ]
            )
        room = IMPORT_MAX - self._next_index
        self._buffer.extend(rows[:room])
        self._next_index += min(len(rows), room)
        if len(rows) > room:
            await self.flush()
            raise InvalidArgumentError(
                [
                    FieldViolation(
                        f"requests[{IMPORT_MAX}]",
                        f"an import takes at most {IMPORT_MAX} rows; split the rest into "
                        "another import",
                    )
                ]
            )
        if self._heartbeat_due():
            await self.flush()
        elif len(self._buffer) >= CHUNK:
            await self._send()

    async def flush(self) -> None:
        """Stages every row received so far and waits until it is written."""
        await self._send()
        await self._written()
        if self._opened and self._heartbeat_due():
            await self._write(checked_chunk([], self._buffer_start))

    async def finish(self) -> int:
        if not self._opened:
            return self._replayed
        async with self._uow.writing() as uow:
            now = utc_now()
            outcome = await uow.imports.promote(self._import_id, METHOD, now, now - REQUEST_ID_TTL)
            if outcome is None:
                raise ImportExpiredError()
            if isinstance(outcome, StagedClash):
                raise clash_error(outcome)
            await uow.commit()
        return outcome + self._replayed

    async def discard(self) -> None:
        await self._abandon_write()
        if not self._began:
            return
        async with self._uow.writing() as uow:
            await uow.imports.discard(self._import_id)
            await uow.commit()
        self._began = False

    async def _send(self) -> None:
        """Checks the buffered rows a chunk at a time and starts each chunk's write once
        the one before has succeeded; the last write is left in flight."""
        while self._buffer:
            chunk, start = self._buffer[:CHUNK], self._buffer_start
            del self._buffer[:CHUNK]
            self._buffer_start += len(chunk)
            checked = checked_chunk(chunk, start)  # while the chunk before is being written
            # Its error comes first, even over one found just now: its rows came first.
            await self._written()
            self._began = True
            self.writing = asyncio.create_task(self._write(checked))

    async def _written(self) -> None:
        """Waits for the write in flight; raises its error."""
        if self.writing is not None:
            await self.writing
            # Only now: if this call is cancelled while waiting, discard finds the write.
            self.writing = None

    async def _abandon_write(self) -> None:
        writing, self.writing = self.writing, None
        if writing is None:
            return
        writing.cancel()
        # Its connection closed, its transaction rolled back, before discard deletes;
        # its error, if any, loses to the one this call already fails with.
        await asyncio.gather(writing, return_exceptions=True)

    async def _write(self, chunk: CheckedChunk) -> None:
        # The chunk is checked against stored users, not against the rows earlier chunks
        # staged: PostgreSQL plans that probe of import_rows badly whenever its statistics
        # are stale, hashing every staged row once a chunk (quadratic). The unique
        # constraints of import_rows catch a repeat instead, and only a chunk that fails
        # pays for the full check, which names the row a check before staging would have.
        try:
            replayed = await self._stage(chunk)
        except (InvalidArgumentError, NotFoundError, AlreadyExistsError):
            # A repeat of a staged row (StagedRepeatError) may come before the error found.
            await self._raise_first_bad_row(chunk)
            raise
        if replayed is None:
            raise ImportExpiredError()
        self._opened = True
        self._last_write = time.monotonic()
        self._replayed += replayed

    async def _stage(self, chunk: CheckedChunk) -> int | None:
        """Stages the chunk; how many of its rows were replayed, None if it was purged."""
        async with self._uow.writing() as uow:
            now = utc_now()
            if not self._opened:
                await uow.imports.open(self._import_id, now)
            stored = await uow.imports.taken_emails(chunk.emails)
            clashes = ImportClashes(
                staged_emails=set(), stored_emails=stored, staged_request_ids=set()
            )
            staged, replayed = await sorted_rows(uow, chunk, clashes)
            # Only after the rows before it: their clashes come earlier in the stream.
            if chunk.invalid is not None:
                raise chunk.invalid
            if not await uow.imports.stage(self._import_id, staged, now):
                return None
            await uow.commit()
        return replayed

    async def _raise_first_bad_row(self, chunk: CheckedChunk) -> None:
        """Checks the chunk against what earlier chunks staged too, in a transaction of
        its own: the failed one may be unusable (PostgreSQL) and was rolled back."""
        async with self._uow.reading() as uow:
            clashes = await uow.imports.clashes(self._import_id, chunk.emails, chunk.request_ids)
            await sorted_rows(uow, chunk, clashes)
        if chunk.invalid is not None:
            raise chunk.invalid

    def _heartbeat_due(self) -> bool:
        return time.monotonic() - self._last_write >= HEARTBEAT_SECONDS
