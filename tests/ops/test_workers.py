"""`--workers N`: processes share the port, a dead one comes back, SIGTERM drains them all."""

from __future__ import annotations

import asyncio
import contextlib
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

from tests.backends import fresh_database
from tests.ops.stopping import (
    STOP_SECONDS,
    starting,
    stop_at,
    wait_for_children,
    workers_of,
)
from tests.process.server_process import ServerProcess, free_port
from tests.rpc import UserStub, create_user

GRACE_SECONDS = 5.0
RESTART_SECONDS = 10.0
# A worker notices a dead parent within a second and drains (GRACE_SECONDS at most).
ORPHAN_SECONDS = 1.0 + GRACE_SECONDS + 5.0
# Seconds after Python starts in the parent: its imports, its migration of a fresh
# database, spawning the workers. None: as soon as it catches SIGTERM (its imports).
PARENT_MOMENTS = (None, 0.3, 0.6)
# Seconds after both workers were spawned: the first mostly finds them before Python runs
# in them (then they die of the signal they cannot catch yet), the second in their imports.
WORKER_MOMENTS = (0.0, 0.3)


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


def workers_args(port: int, database_url: str) -> tuple[str, ...]:
    return (
        *("--port", str(port), "--database-url", database_url),
        *("--workers", "2", "--grace-seconds", str(GRACE_SECONDS)),
    )


@pytest.mark.parametrize("moment", PARENT_MOMENTS)
async def test_sigterm_while_the_parent_starts_exits_zero(
    tmp_path: Path, backend: str, moment: float | None
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        port = free_port()
        with starting(ServerProcess(tmp_path, workers_args(port, url), port=port)) as process:
            code = await asyncio.to_thread(stop_at, process, moment)
            left = workers_of(url)
    assert code == 0, process.stderr
    assert not left, f"workers {left} outlived the parent"
    assert "Traceback" not in process.stderr, process.stderr


def stop_once_workers_spawned(process: ServerProcess, seconds: float) -> int:
    wait_for_children(process.pid, 2)
    time.sleep(seconds)
    return process.terminate(STOP_SECONDS)


@pytest.mark.parametrize("seconds", WORKER_MOMENTS)
async def test_sigterm_while_the_workers_start_exits_zero(
    tmp_path: Path, backend: str, seconds: float
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        port = free_port()
        with starting(ServerProcess(tmp_path, workers_args(port, url), port=port)) as process:
            code = await asyncio.to_thread(stop_once_workers_spawned, process, seconds)
            left = workers_of(url)
    assert code == 0, process.stderr
    assert not left, f"workers {left} outlived the parent"
    assert "Traceback" not in process.stderr, process.stderr


async def test_a_worker_that_dies_while_draining_fails_the_parent(
    tmp_path: Path, postgres_url: str
) -> None:
    port = free_port()
    locker = create_async_engine(postgres_url)
    try:
        with ServerProcess(tmp_path, workers_args(port, postgres_url), port=port) as process:
            workers = await wait_for_workers(process.pid, port, 2, set())
            async with grpc.aio.insecure_channel(process.target) as channel:
                users = UserStub(channel)
                user = await create_user(users)
                async with locker.connect() as lock:
                    # The call waits behind the lock, which keeps its worker draining.
                    await lock.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
                    in_flight = asyncio.ensure_future(
                        users.GetUser(user_service_pb2.GetUserRequest(id=user.id), timeout=20)
                    )
                    await asyncio.sleep(0.3)
                    stopping = asyncio.create_task(
                        asyncio.to_thread(process.terminate, GRACE_SECONDS + 10)
                    )
                    await asyncio.sleep(0.5)
                    for pid in workers:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    code = await stopping
                    await lock.rollback()
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await in_flight
    finally:
        await locker.dispose()
    assert code == 1, process.stderr
    assert f"exited with {-signal.SIGKILL} while stopping" in process.stderr, process.stderr


@pytest.mark.slow
async def test_workers_of_a_parent_killed_outright_stop_by_themselves(tmp_path: Path) -> None:
    async with fresh_database("sqlite", tmp_path) as url:
        port = free_port()
        with ServerProcess(tmp_path, workers_args(port, url), port=port) as process:
            workers = await wait_for_workers(process.pid, port, 2, set())
            assert process.terminate(5, signal.SIGKILL) == -signal.SIGKILL
            gone, alive = await asyncio.to_thread(
                psutil.wait_procs, [psutil.Process(pid) for pid in workers], ORPHAN_SECONDS
            )
            assert alive == [], f"workers {[p.pid for p in alive]} outlived their parent"
            assert {p.pid for p in gone} == workers
