"""`--workers N`: processes share the port, a dead one comes back, SIGTERM drains them all."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from pathlib import Path
from typing import Any

import grpc
import psutil  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from users.v1 import resources_pb2, user_service_pb2

from tests.process.server_process import ServerProcess, free_port
from tests.rpc import UserStub, create_user

GRACE_SECONDS = 5.0
RESTART_SECONDS = 10.0


def listening_workers(parent: int, port: int) -> set[int]:
    """Pids of the parent's children that listen on `port`."""
    pids = set()
    for child in psutil.Process(parent).children():
        try:
            connections: list[Any] = child.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections):
            pids.add(child.pid)
    return pids


async def wait_for_workers(parent: int, port: int, count: int, not_in: set[int]) -> set[int]:
    deadline = time.monotonic() + RESTART_SECONDS
    while True:
        pids = listening_workers(parent, port)
        if len(pids) == count and not pids & not_in:
            return pids
        assert time.monotonic() < deadline, f"listening workers: {pids}, expected {count}"
        await asyncio.sleep(0.1)


async def write_until_refused(stub: UserStub, writer: int, acknowledged: list[int]) -> None:
    for n in itertools.count():
        user = resources_pb2.User(name="Load", email=f"w{writer}-{n}@example.com")
        try:
            created = await stub.CreateUser(
                user_service_pb2.CreateUserRequest(user=user), timeout=10
            )
        except grpc.aio.AioRpcError:
            return
        acknowledged.append(created.id)


@pytest.mark.slow
async def test_workers_share_the_port_restart_when_killed_and_drain_on_sigterm(
    tmp_path: Path, postgres_url: str
) -> None:
    port = free_port()
    args = [
        *("--port", str(port), "--database-url", postgres_url),
        *("--workers", "2", "--grace-seconds", str(GRACE_SECONDS)),
    ]
    with ServerProcess(tmp_path, args, port=port) as process:
        first = await wait_for_workers(process.pid, port, 2, set())
        # Every new connection lands on one of the workers; all of them answer.
        for _ in range(10):
            async with grpc.aio.insecure_channel(process.target) as channel:
                await create_user(UserStub(channel))

        killed = min(first)
        os.kill(killed, signal.SIGKILL)
        second = await wait_for_workers(process.pid, port, 2, {killed})
        assert max(first) in second

        acknowledged: list[int] = []
        channels = [grpc.aio.insecure_channel(process.target) for _ in range(4)]
        writers = [
            asyncio.create_task(write_until_refused(UserStub(c), w, acknowledged))
            for w, c in enumerate(channels)
        ]
        await asyncio.sleep(1.0)
        code = await asyncio.to_thread(process.terminate, GRACE_SECONDS + 10)
        await asyncio.gather(*writers)
        for channel in channels:
            await channel.close(None)
        assert code == 0, process.stderr
        assert not any(psutil.pid_exists(pid) for pid in second), "a worker outlived the parent"
    assert "Traceback" not in process.stderr, process.stderr
    assert f"exited with {-signal.SIGKILL}; restarting it" in process.stderr

    assert len(acknowledged) > 20
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            stored = await connection.execute(
                text("SELECT id FROM users WHERE id = ANY(:ids)"), {"ids": acknowledged}
            )
            assert {row.id for row in stored} == set(acknowledged)
    finally:
        await engine.dispose()
