"""SIGTERM drains: readiness first, then refusal, in-flight calls finish, exit 0, no loss."""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from users.v1 import resources_pb2, user_service_pb2

from service import server
from service.config import Settings
from service.db.engine import CONNECT_TIMEOUT_SECONDS
from tests.backends import fresh_database
from tests.ops.pool import checked_out
from tests.ops.stopping import STOP_SECONDS, starting, stop_at
from tests.process.server_process import (
    START_TIMEOUT_SECONDS,
    ServerProcess,
    free_port,
    health_status,
    sqlite_url,
)
from tests.rpc import UserStub, create_user, fails

GRACE_SECONDS = 5.0
WRITERS = 8
# Seconds after Python starts in the process: its imports, migrating a fresh database,
# connecting, building the server, one or the other depending on the machine's load.
# None: as soon as it catches SIGTERM, which is during its imports.
START_MOMENTS = (None, 0.3, 0.6, 1.0)


async def write_until_refused(
    stub: UserStub, writer: int, acknowledged: list[resources_pb2.User], loaded: asyncio.Event
) -> grpc.StatusCode:
    for n in itertools.count():
        user = resources_pb2.User(name="Load", email=f"w{writer}-{n}@example.com")
        try:
            created = await stub.CreateUser(
                user_service_pb2.CreateUserRequest(user=user), timeout=10
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
        acknowledged.append(created)
        if len(acknowledged) >= 100:
            loaded.set()
    raise AssertionError("unreachable")


async def test_sigterm_under_write_load_loses_no_acknowledged_write(
    tmp_path: Path, postgres_url: str
) -> None:
    port = free_port()
    args = ("--port", str(port), "--database-url", postgres_url, "--grace-seconds", "5")
    acknowledged: list[resources_pb2.User] = []
    with ServerProcess(tmp_path, args, port=port) as process:
        async with grpc.aio.insecure_channel(process.target) as channel:
            stub = UserStub(channel)
            loaded = asyncio.Event()
            writers = [
                asyncio.create_task(write_until_refused(stub, w, acknowledged, loaded))
                for w in range(WRITERS)
            ]
            await asyncio.wait_for(loaded.wait(), 30)
            code = await asyncio.to_thread(process.terminate, GRACE_SECONDS + 5)
            refusals = await asyncio.gather(*writers)
        assert code == 0, process.stderr
        assert "Traceback" not in process.stderr, process.stderr
    assert set(refusals) == {grpc.StatusCode.UNAVAILABLE}, refusals
    with ServerProcess(tmp_path, args, port=port) as restarted:
        async with grpc.aio.insecure_channel(restarted.target) as channel:
            found = await UserStub(channel).BatchGetUsers(
                user_service_pb2.BatchGetUsersRequest(ids=[u.id for u in acknowledged[:1000]]),
                timeout=10,
            )
    assert list(found.users) == acknowledged[:1000]
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            stored = (await connection.execute(text("SELECT count(*) FROM users"))).scalar_one()
    finally:
        await engine.dispose()
    # Refused calls may or may not have been written; acknowledged ones all were.
    assert len(acknowledged) <= stored <= len(acknowledged) + WRITERS


def test_sigint_drains_like_sigterm(tmp_path: Path) -> None:
    port = free_port()
    args = ("--port", str(port), "--database-url", sqlite_url(tmp_path / "users.db"))
    with ServerProcess(tmp_path, args, port=port) as process:
        # Only SIGINT: a second signal after the drain would race the interpreter's exit.
        code = process.terminate(GRACE_SECONDS, signal.SIGINT)
        assert health_status(process.target) is None, "still serving after SIGINT"
    assert code == 0, process.stderr
    assert "Traceback" not in process.stderr, process.stderr


@pytest.mark.parametrize("moment", START_MOMENTS)
async def test_sigterm_while_starting_exits_zero(
    tmp_path: Path, backend: str, moment: float | None
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        port = free_port()
        args = ("--port", str(port), "--database-url", url)
        with starting(ServerProcess(tmp_path, args, port=port)) as process:
            code = await asyncio.to_thread(stop_at, process, moment)
    assert code == 0, process.stderr
    assert "Traceback" not in process.stderr, process.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_while_the_database_does_not_answer_exits_zero_at_once(
    tmp_path: Path, workers: str, signum: int
) -> None:
    # Takes the server's connection and never answers, like a database host that hangs.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.settimeout(START_TIMEOUT_SECONDS)
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{silent.getsockname()[1]}/users"
        port = free_port()
        args = ("--port", str(port), "--database-url", url, "--workers", workers)
        with starting(ServerProcess(tmp_path, args, port=port)) as process:
            connection, _ = silent.accept()
            with connection:
                began = time.monotonic()
                code = process.terminate(STOP_SECONDS, signum)
                took = time.monotonic() - began
    assert code == 0, process.stderr
    # Not waiting for the connection attempt to time out (that ends in exit 2).
    assert took < CONNECT_TIMEOUT_SECONDS, f"{took:.1f} s:\n{process.stderr}"
    assert "Traceback" not in process.stderr, process.stderr


async def test_drain_turns_readiness_off_first_refuses_new_calls_and_finishes_in_flight(
    postgres_url: str,
) -> None:
    running = await server.start(Settings(host="127.0.0.1", port=0, database_url=postgres_url))
    locker = create_async_engine(postgres_url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            users = UserStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            user = await create_user(users)
            async with locker.connect() as lock:
                # The in-flight call blocks behind the lock until the drain has begun.
                await lock.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
                in_flight = asyncio.ensure_future(
                    users.GetUser(user_service_pb2.GetUserRequest(id=user.id), timeout=20)
                )
                await asyncio.sleep(0.3)
                stopping = asyncio.create_task(running.stop(grace=GRACE_SECONDS))
                await asyncio.sleep(0.3)
                for service in ("", server.USER_SERVICE, server.ADDRESS_SERVICE):
                    checked = await health.Check(
                        health_pb2.HealthCheckRequest(service=service), timeout=5
                    )
                    assert checked.status == health_pb2.HealthCheckResponse.NOT_SERVING
                refused = await fails(
                    users.GetUser(user_service_pb2.GetUserRequest(id=user.id), timeout=5)
                )
                assert refused.code == grpc.StatusCode.UNAVAILABLE
                assert not in_flight.done() and not stopping.done()
                await lock.rollback()
            assert await in_flight == user
            await asyncio.wait_for(stopping, GRACE_SECONDS)
    finally:
        await locker.dispose()
        await running.stop(grace=0)
    assert checked_out(running) == 0
