"""WatchUsers: every committed change to users, once, in commit order, fanned out.

The database keeps the change log (a trigger on users appends one change per written
row in the writing transaction; a sequencer numbers committed changes in the order it
finds them: the README's "How the change stream works" and db/change_log.py). Here:

- `ChangeFeed`, one per process: a single loop that runs the sequencer and reads new
  changes once for every watcher, encodes each once, and keeps the newest in a bounded
  buffer; it wakes on the database's signal (PostgreSQL's NOTIFY) or a short poll.
- `ChangeFeed.watch`, one per call: changes after a position, from the buffer when it
  still holds them, else read from the database at the watcher's own pace. A slow
  watcher holds one batch, never a queue, and never holds up the loop or the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from service.domain import validation as check
from service.domain.errors import (
    DatabaseUnavailableError,
    DomainError,
    FieldViolation,
    InvalidArgumentError,
    ResumeTokenExpiredError,
)
from service.domain.models import Change, utc_now
from service.domain.ports import ChangeLog

log = logging.getLogger("users.changes")

# API.md: changes are kept at least this long (--change-retention).
DEFAULT_RETENTION = timedelta(days=7)
# Changes one sequencer round numbers, one loop read fetches, one catch-up read returns.
BATCH = 5_000
# Changes the feed keeps in memory for watchers that are nearly caught up.
BUFFER = 4_096
# How often the loop looks for changes when no signal wakes it (API.md: "a short poll").
POLL_SECONDS = 0.05
# With a wake-up signal (PostgreSQL LISTEN) the poll only guards against a lost one.
SIGNALLED_POLL_SECONDS = 1.0
RETRY_SECONDS = 0.5
# Rounds start at least this far apart: under a stream of writes, each round numbers and
# reads the writes of the last interval together instead of a round per write.
MIN_ROUND_SECONDS = 0.025


@dataclass(frozen=True, slots=True)
class Encoded:
    """A change as every watcher sends it: encoded once, shared."""

    position: int
    email_domain: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class WatchInput:
    after: int | None  # the position of the last change processed; None: from now
    email_domain: str = ""


def check_watch(email_domain: str) -> str:
    found = check.Violations()
    check.check_filter_text(found, "email_domain", email_domain)
    if "@" in email_domain and not found.items:
        found.add("email_domain", "is the part after '@' only, e.g. example.com")
    found.raise_if_any()
    return email_domain.lower()  # stored domains are lower-cased: the filter folds case


class ResumeTokenAheadError(InvalidArgumentError):
    """A token this server signed for a position its database never reached (a token
    from before a database restore, say)."""

    def __init__(self) -> None:
        super().__init__(
            [
                FieldViolation(
                    "resume_token",
                    "is ahead of this database's change log; start again from StreamUsers",
                )
            ]
        )


class ChangeFeed:
    def __init__(
        self,
        change_log: ChangeLog,
        encode: Callable[[Change], bytes],
        *,
        buffer: int = BUFFER,
    ) -> None:
        self._log = change_log
        self._encode = encode
        self._buffer_size = buffer
        self._buffer: list[Encoded] = []  # consecutive positions, oldest first
        self._head = 0  # every change up to here is committed and was read
        self._changed = asyncio.Event()
        self._failure: DomainError | None = None
        self._outages = 0  # how many times the loop lost the database
        self._task: asyncio.Task[None] | None = None
        self._watchers = 0  # with none, the loop numbers changes but reads none
        self._head_known = True  # False while no watcher needed the loop to follow it
        self._lag = 0.0  # seconds: see lag_seconds
        self._read_at = time.monotonic()  # when a round last read the log

    @property
    def head(self) -> int:
        return self._head

    def lag_seconds(self) -> float:
        """How far behind the commits the feed is (the metric an alert watches): the age
        of the newest change its last round published, 0 if that round found none; while
        it cannot read the log, the time since it last could."""
        if self._failure is not None:
            return time.monotonic() - self._read_at
        return self._lag

    async def start(self) -> None:
        """From the log's present: what came before is read from the database on demand."""
        self._head = (await self._log.state()).last_position
        self._task = asyncio.create_task(self._run(), name="change feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._log.close()

    async def start_position(self, wanted: WatchInput) -> int:
        """Where a watch starts: after the given position, or after the last change
        committed now. ResumeTokenExpiredError if changes after it were purged."""
        # The log itself says whether the database answers: the loop may not have
        # noticed yet that it is back (or gone).
        if wanted.after is None:
            # "Now" is after every change committed before this call: number them first.
            while await self._log.sequence(BATCH) == BATCH:
                pass
        state = await self._log.state()
        if wanted.after is None:
            return state.last_position
        if wanted.after < state.purged_through:
            raise ResumeTokenExpiredError()
        if wanted.after > state.last_position:
            raise ResumeTokenAheadError()
        return wanted.after

    async def watch(self, after: int, domain: str) -> AsyncIterator[Encoded]:
        """Changes after position `after` (of one email domain, if given), in position
        order, for ever."""
        self._watchers += 1
        try:
            async for change in self._follow(after, domain):
                yield change
        finally:
            self._watchers -= 1

    async def _follow(self, after: int, domain: str) -> AsyncIterator[Encoded]:
        # An outage that began before this watch is over for it (its start read the log);
        # one that begins while it runs ends it, with where to resume.
        outages = self._outages
        while True:
            changed = self._changed
            if self._failure is not None and self._outages != outages:
                raise self._failure
            if after >= self._head:
                await changed.wait()
                continue
            batch, through = self._buffered(after) or await self._read(after, domain)
            for change in batch:
                if not domain or change.email_domain == domain:
                    yield change
            # Past the changes another domain filled the read with too.
            after = through

    async def purge_expired(self, retention: timedelta) -> int:
        """Forgets changes older than `retention`, in bounded batches; how many went."""
        cutoff = utc_now() - retention
        purged = 0
        while True:
            batch = await self._log.purge(cutoff, BATCH)
            purged += batch
            if batch < BATCH:
                return purged

    def _buffered(self, after: int) -> tuple[list[Encoded], int] | None:
        """The buffered changes after `after` (up to BATCH) and the position they reach;
        None if the buffer no longer holds the next one."""
        buffer = self._buffer
        if not buffer or after + 1 < buffer[0].position:
            return None
        start = after + 1 - buffer[0].position
        batch = buffer[start : start + BATCH]
        return batch, batch[-1].position

    async def _read(self, after: int, domain: str) -> tuple[list[Encoded], int]:
        """A watcher behind the buffer catches up from the database: the changes (of
        `domain`, if given) at (after, through], never past what the feed knows to be
        committed, and `through`."""
        through = min(after + BATCH, self._head)
        changes = await self._log.read(after, through, domain)
        if (await self._log.state()).purged_through > after:
            # Purged while this watcher was behind: what it missed is gone.
            raise ResumeTokenExpiredError()
        return [self._encoded(change) for change in changes], through

    def _encoded(self, change: Change) -> Encoded:
        return Encoded(change.position, change.email_domain, self._encode(change))

    async def _run(self) -> None:
        """The one loop: sequence, read what is new, publish; wake on a signal or poll."""
        while True:
            try:
                await self._log.sequence(BATCH)
                if not self._watchers:
                    # Nobody to serve: number changes, read and hold nothing.
                    self._buffer.clear()
                    self._head_known = False
                    changes = []
                else:
                    if not self._head_known:
                        # A watcher came: follow from the log's head; what lies before
                        # it, watchers read from the database.
                        self._head = (await self._log.state()).last_position
                        self._head_known = True
                        self._wake()
                    changes = await self._log.read(self._head, self._head + BATCH, "")
            except DomainError as error:
                self._fail(error)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            except Exception:
                log.exception("the change feed failed; retrying in %.1f s", RETRY_SECONDS)
                self._fail(DatabaseUnavailableError())
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if self._failure is not None:
                log.info("the change feed is reading again")
                self._failure = None
            self._read_at = time.monotonic()
            self._lag = 0.0
            if changes:
                self._publish(changes)
                self._lag = max(0.0, (utc_now() - changes[-1].commit_time).total_seconds())
            if len(changes) < BATCH:
                await asyncio.sleep(MIN_ROUND_SECONDS)
                await self._wait()

    async def _wait(self) -> None:
        """Until the log signals a write, or the poll interval; the loop outlives any
        failure of the signal (it polls meanwhile)."""
        try:
            await self._log.wait_for_changes(
                SIGNALLED_POLL_SECONDS if self._log.signalled else POLL_SECONDS
            )
        except Exception:
            log.exception("waiting for change notifications failed; polling")
            await asyncio.sleep(POLL_SECONDS)

    def _publish(self, changes: Sequence[Change]) -> None:
        encode = self._encoded
        self._buffer.extend(encode(change) for change in changes)
        self._head = changes[-1].position
        if len(self._buffer) > 2 * self._buffer_size:
            del self._buffer[: len(self._buffer) - self._buffer_size]
        self._wake()

    def _fail(self, error: DomainError) -> None:
        if self._failure is None:
            log.warning("the change feed cannot read the database (%s)", error.message)
            self._outages += 1
        self._failure = error
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
