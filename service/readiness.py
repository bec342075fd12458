"""Readiness follows the database: a prober pings it every second and flips health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.engine import create_engine

log = logging.getLogger("users.readiness")

INTERVAL_SECONDS = 1.0
PING_TIMEOUT_SECONDS = 2.0


class ReadinessProbe:
    """Pings through a one-connection engine of its own, so a busy call pool does not
    read as an unreachable database (overload shows as UNAVAILABLE calls instead)."""

    def __init__(
        self,
        database_url: str,
        set_ready: Callable[[bool], Awaitable[None]],
        *,
        interval: float = INTERVAL_SECONDS,
        on_tick: Callable[[bool], None] | None = None,
        pooler: str = "none",
    ) -> None:
        self._engine: AsyncEngine = create_engine(database_url, pool_size=1, pooler=pooler)
        self._set_ready = set_ready
        self._interval = interval
        self._on_tick = on_tick
        self._ready = True
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="readiness-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._engine.dispose()

    async def _run(self) -> None:
        while True:
            ready = await self._ping()
            if ready != self._ready:
                self._ready = ready
                await self._set_ready(ready)
                if ready:
                    log.info("database reachable again: readiness SERVING")
                else:
                    log.warning("database unreachable: readiness NOT_SERVING")
            if self._on_tick is not None:
                self._on_tick(self._ready)
            await asyncio.sleep(self._interval)

    async def _ping(self) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # every failure means "not ready"; the kind goes to the debug log
            log.debug("database ping failed", exc_info=True)
            return False
        return True
