"""An in-memory domain.ports.ChangeLog: changes are committed unnumbered, sequence()
numbers them in commit order, and failures are switched on and off by the test."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from service.domain.errors import DatabaseUnavailableError
from service.domain.models import Change, ChangeType, User, utc_now
from service.domain.ports import ChangeLogState


def user_of(user_id: int, domain: str, version: int) -> User:
    now = utc_now()
    return User(user_id, f"user {user_id}", f"u{user_id}@{domain}", now, now, version)


class FakeChangeLog:
    signalled = False

    def __init__(self) -> None:
        self.pending: list[tuple[ChangeType, User]] = []
        self.numbered: list[Change] = []
        self.sequenced_at: dict[int, datetime] = {}
        self.purged_through = 0
        self.down = False
        self.reads = 0
        self._woken = asyncio.Event()

    @property
    def last_position(self) -> int:
        return self.numbered[-1].position if self.numbered else self.purged_through

    def commit(self, change_type: ChangeType, user: User) -> None:
        self.pending.append((change_type, user))
        self._woken.set()

    def _check(self) -> None:
        if self.down:
            raise DatabaseUnavailableError()

    async def state(self) -> ChangeLogState:
        self._check()
        return ChangeLogState(self.last_position, self.purged_through)

    async def sequence(self, limit: int) -> int:
        self._check()
        taken, self.pending = self.pending[:limit], self.pending[limit:]
        for change_type, user in taken:
            position = self.last_position + 1
            domain = user.email.split("@")[1]
            self.numbered.append(Change(position, change_type, user, domain, utc_now()))
            self.sequenced_at[position] = utc_now()
        return len(taken)

    async def read(self, after: int, through: int, email_domain: str) -> list[Change]:
        self._check()
        self.reads += 1
        return [
            c
            for c in self.numbered
            if after < c.position <= through
            and (not email_domain or c.email_domain == email_domain)
        ]

    async def purge(self, before: datetime, limit: int) -> int:
        self._check()
        old = [c for c in self.numbered if self.sequenced_at[c.position] < before][:limit]
        if not old:
            return 0
        self.purged_through = old[-1].position
        self.numbered = [c for c in self.numbered if c.position > self.purged_through]
        return len(old)

    def age_everything(self, by: timedelta) -> None:
        self.sequenced_at = {p: t - by for p, t in self.sequenced_at.items()}

    async def wait_for_changes(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._woken.wait()
        except TimeoutError:
            pass
        self._woken.clear()

    async def close(self) -> None:
        return None
