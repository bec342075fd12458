"""StreamUsers keeps a real server process's memory flat, fast reader or slow.

The server runs as `python -m service serve` here (not in-process), so psutil measures
the server alone. Reading all matching rows into memory first would grow it by about
30 MiB for these 50,000 users; batch by batch it grows by 1 or 2.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psutil  # type: ignore[import-untyped]
import pytest
from users.v1 import user_service_pb2

from service.server import RunningServer
from tests.process.server_process import ServerProcess, free_port
from tests.rpc import UserStub
from tests.seeding import Seeded, seed_users, unseed

USERS = 50_000
GROWTH_LIMIT = 12 * 2**20


@pytest.fixture
async def seeded(running: RunningServer) -> AsyncIterator[Seeded]:
    made = await seed_users(running.engine, USERS)
    yield made
    await unseed(running.engine, made)


class PeakRss:
    """Samples a process's resident memory every 10 ms while running."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = self.now()
        self._task: asyncio.Task[None] | None = None

    def now(self) -> int:
        return int(self._process.memory_info().rss)

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.now())
            await asyncio.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, self.now())


async def stream_all(stub: UserStub, seeded: Seeded, pause: float = 0.0, stop: int = 0) -> int:
    request = user_service_pb2.StreamUsersRequest(email_domain=seeded.domain, batch_size=1000)
    received = 0
    async for message in stub.StreamUsers(request):
        received += len(message.users)
        if pause:
            await asyncio.sleep(pause)
        if stop and received >= stop:
            break
    return received


async def test_server_memory_stays_flat_for_fast_and_slow_readers(
    database_url: str, seeded: Seeded, tmp_path: Path
) -> None:
    port = free_port()
    args = ["--port", str(port), "--host", "127.0.0.1", "--database-url", database_url]
    with ServerProcess(tmp_path, args, port=port) as server:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = UserStub(channel)
            await stream_all(stub, seeded, stop=3000)  # warm: imports, caches, pool
            with PeakRss(server.pid) as fast:
                baseline = fast.now()
                assert await stream_all(stub, seeded) == USERS
            with PeakRss(server.pid) as slow:
                assert await stream_all(stub, seeded, pause=0.03, stop=30_000) >= 30_000
    growth = max(fast.peak, slow.peak) - baseline
    assert growth < GROWTH_LIMIT, f"the server grew by {growth / 2**20:.1f} MiB"
