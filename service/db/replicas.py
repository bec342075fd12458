"""Read replicas (--read-database-url): PostgreSQL streaming replicas for the reads that
may lag a little (ListUsers, ListAddresses, StreamUsers; the use case says so).

A monitor asks each replica for its replay lag every second. A replica that does not
answer, is not in recovery (promoted: no longer following this primary) or lags more than
--max-replica-lag is skipped for the primary until it is back; each change is one log
line and shows in the metrics. A replica that fails a connection between two checks is
skipped at once (uow.SqlUnitOfWork falls back to the primary).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.engine import create_engine, safe_url

log = logging.getLogger("users.replicas")

CHECK_EVERY_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 2.0
POOL_SIZE = 10
# Caught up (nothing received that is not replayed) is no lag, however long ago the last
# transaction was: an idle primary sends nothing to replay.
_LAG = text(
    "SELECT pg_is_in_recovery() AS following, CASE "
    "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END AS lag"
)


@dataclass
class Replica:
    name: str  # the URL without its password: for logs and metrics
    engine: AsyncEngine  # reads in autocommit where the primary's reads are
    usable: bool = False
    lag: float | None = None
    why: str = "not checked yet"


# (replica name, usable, lag in seconds or None): the metrics' view of a check.
Observer = Callable[[str, bool, float | None], None]


class ReplicaSet:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        max_lag: float,
        pooler: str = "none",
        observe: Observer | None = None,
    ) -> None:
        self.replicas = [
            Replica(safe_url(url), _reading_engine(url, pooler)) for url in urls if url
        ]
        self._max_lag = max_lag
        self._observe = observe
        self._turns = itertools.cycle(range(max(1, len(self.replicas))))
        self._task: asyncio.Task[None] | None = None

    def __bool__(self) -> bool:
        return bool(self.replicas)

    def pick(self) -> Replica | None:
        """The next usable replica in turn, or None: read from the primary."""
        for _ in self.replicas:
            replica = self.replicas[next(self._turns)]
            if replica.usable:
                return replica
        return None

    def failed(self, replica: Replica, error: BaseException) -> None:
        """A call could not reach `replica`: skip it until a check finds it back."""
        self._set(replica, usable=False, lag=replica.lag, why=f"unreachable ({error})")

    async def start(self) -> None:
        await self.check()
        self._task = asyncio.create_task(self._run(), name="replica monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for replica in self.replicas:
            await replica.engine.dispose()

    async def check(self) -> None:
        await asyncio.gather(*(self._check(replica) for replica in self.replicas))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY_SECONDS)
            await self.check()

    async def _check(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                async with replica.engine.connect() as connection:
                    row = (await connection.execute(_LAG)).one()
        except Exception as error:
            why = f"unreachable ({type(error).__name__})"
            self._set(replica, usable=False, lag=None, why=why)
            return
        lag = float(row.lag)
        if not row.following:
            self._set(replica, usable=False, lag=None, why="not a replica (promoted?)")
        elif lag > self._max_lag:
            self._set(replica, usable=False, lag=lag, why=f"{lag:.1f} s behind")
        else:
            self._set(replica, usable=True, lag=lag, why="")

    def _set(self, replica: Replica, *, usable: bool, lag: float | None, why: str) -> None:
        # One line per change of state (or of the reason a replica is skipped).
        if usable != replica.usable or (not usable and _kind(why) != _kind(replica.why)):
            if usable:
                log.info("read replica %s is in use again (%.1f s behind)", replica.name, lag or 0)
            else:
                log.warning("read replica %s skipped for the primary: %s", replica.name, why)
        replica.usable, replica.lag, replica.why = usable, lag, why
        if self._observe is not None:
            self._observe(replica.name, usable, lag)


def _reading_engine(url: str, pooler: str) -> AsyncEngine:
    engine = create_engine(url, pool_size=POOL_SIZE, pooler=pooler)
    if pooler == "none":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def _kind(why: str) -> str:
    return why.split(" ", 1)[0]
