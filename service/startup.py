"""Before serving: stop signals handled by the event loop, the database reached and its
schema brought up to date, unless a stop comes first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.engine import create_engine
from service.db.migrate import HEAD, stored_revision, upgrade
from service.stop_signals import STOP_SIGNALS, received_early

T = TypeVar("T")


class StoppedError(Exception):
    """A stop signal came before the server served; it ends with exit 0."""


def stop_event() -> asyncio.Event:
    """Set by SIGTERM or SIGINT from now on; set already if one came while importing."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    # Read once the loop's handlers are in place, so no signal falls in between.
    if received_early():
        stop.set()
    return stop


async def migrate_unless_stopped(engine: AsyncEngine, stop: asyncio.Event | None) -> None:
    """Brings the schema to HEAD; raises StoppedError if `stop` is set before it is done.
    Reaching the database (up to the connect timeout when it does not answer) is given up
    at once; a migration under way is finished first, as MariaDB commits each DDL statement
    as it goes and one cut short would stay half applied."""
    revision = await until_stopped(stop, stored_revision(engine))
    if revision != HEAD:
        await upgrade(engine)
    if stop is not None and stop.is_set():
        raise StoppedError


async def migrate_at(database_url: str, stop: asyncio.Event, pooler: str = "none") -> None:
    """migrate_unless_stopped on an engine of its own, for a process that serves none."""
    engine = create_engine(database_url, pooler=pooler)
    try:
        await migrate_unless_stopped(engine, stop)
    finally:
        await engine.dispose()


async def until_stopped(stop: asyncio.Event | None, work: Awaitable[T]) -> T:
    """What `work` returns; if `stop` is set first, `work` is cancelled and StoppedError
    raised. Without a `stop`, simply what `work` returns."""
    if stop is None:
        return await work
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            # Its own cleanup (a connection half made is closed) ends before we go on.
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise StoppedError
    return task.result()
