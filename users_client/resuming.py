"""How long and how often a list, stream or watch tries again after UNAVAILABLE."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from users_client.errors import UnavailableError


@dataclass
class Resumption:
    """Backs off 0.1 s doubling to 1 s (as the published service config does) while the
    server stays unavailable; gives up `budget` seconds after the last progress."""

    budget: float = 30.0
    first_delay: float = 0.1
    max_delay: float = 1.0

    def __post_init__(self) -> None:
        self._delay = self.first_delay
        self._since = time.monotonic()

    def progressed(self) -> None:
        self._delay = self.first_delay
        self._since = time.monotonic()

    async def wait_or_raise(self, error: UnavailableError) -> None:
        """Sleeps before the next try, or raises `error` when the budget is spent."""
        if time.monotonic() - self._since + self._delay > self.budget:
            raise error
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, self.max_delay)
