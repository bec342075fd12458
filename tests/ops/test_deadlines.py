"""A deadline that passes mid-query cancels the statement and frees the connection."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from users.v1 import resources_pb2, user_service_pb2

from service import server
from service.config import Settings
from tests.ops.pool import checked_out
from tests.rpc import UserStub, create_user, fails, fresh_email

CALLS = 2_000
CONCURRENCY = 50


@pytest.fixture
async def postgres_server(postgres_url: str) -> AsyncIterator[server.RunningServer]:
    running = await server.start(Settings(host="127.0.0.1", port=0, database_url=postgres_url))
    yield running
    await running.stop(grace=1)


async def service_queries(connection: AsyncConnection, locker_pid: int) -> list[str]:
    """Statements of other sessions on this database that run or wait right now."""
    # pg_stat_activity is a snapshot taken once per transaction: start a new one.
    await connection.rollback()
    rows = await connection.execute(
        text(
            "SELECT state, query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid NOT IN (pg_backend_pid(), :locker) AND state <> 'idle'"
        ),
        {"locker": locker_pid},
    )
    return [f"{row.state}: {row.query}" for row in rows]


async def test_deadline_passing_mid_query_cancels_the_statement_on_postgres(
    postgres_server: server.RunningServer, postgres_url: str
) -> None:
    engine = create_async_engine(postgres_url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{postgres_server.port}") as channel:
            users = UserStub(channel)
            user = await create_user(users)
            async with engine.connect() as locker, engine.connect() as observer:
                locker_pid = (await locker.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                await locker.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
                failure = await fails(
                    users.GetUser(user_service_pb2.GetUserRequest(id=user.id), timeout=0.5)
                )
                assert failure.code == grpc.StatusCode.DEADLINE_EXCEEDED
                left: list[str] = []
                for _ in range(20):
                    left = await service_queries(observer, locker_pid)
                    if not left:
                        break
                    await asyncio.sleep(0.05)
                assert left == [], "the statement still runs on the server after the deadline"
                # The cancelled call hands its connection back (a shielded rollback).
                await returned_to_pool(postgres_server)
                await locker.rollback()
            # The connection the cancelled call used serves the next call normally.
            fetched = await users.GetUser(user_service_pb2.GetUserRequest(id=user.id), timeout=5)
            assert fetched == user
    finally:
        await engine.dispose()


async def returned_to_pool(running: server.RunningServer) -> None:
    """Cancelled calls hand their connection back from a shielded task; give it a moment
    (housekeeping may hold one briefly too)."""
    for _ in range(100):
        if checked_out(running) == 0:
            return
        await asyncio.sleep(0.05)
    assert checked_out(running) == 0


async def one_hostile_call(users: UserStub, user_id: int, rng: random.Random) -> str:
    kind = rng.randrange(3)
    call: Any
    if kind == 0:
        call = users.GetUser(user_service_pb2.GetUserRequest(id=user_id), timeout=_deadline(rng))
    elif kind == 1:
        request = user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(name="Cancel", email=fresh_email())
        )
        call = users.CreateUser(request, timeout=_deadline(rng))
    else:
        # Short even here: on SQLite a call cancelled mid-statement can leave the closing
        # connection and its replacement waiting on each other's lock until a deadline
        # passes (busy_timeout is 10 s); short deadlines keep such stalls short.
        call = users.ListUsers(user_service_pb2.ListUsersRequest(page_size=20), timeout=1)
    if rng.random() < 0.5:
        return await _cancel_after(call, rng.uniform(0, 0.02))
    try:
        await call
    except grpc.aio.AioRpcError as error:
        assert error.code() in (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.UNAVAILABLE,
        ), error
        return error.code().name
    return "OK"


def _deadline(rng: random.Random) -> float:
    return rng.uniform(0.001, 0.05)


async def _cancel_after(call: Awaitable[Any], delay: float) -> str:
    task = asyncio.ensure_future(call)
    await asyncio.sleep(delay)
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, grpc.aio.AioRpcError):
        return "CANCELLED"
    return "OK"


@pytest.mark.slow
async def test_random_deadlines_and_cancellations_leave_no_connection_checked_out(
    running: server.RunningServer, users: UserStub
) -> None:
    user = await create_user(users)
    rng = random.Random(6)
    outcomes: list[str] = []
    for _ in range(CALLS // CONCURRENCY):
        outcomes += await asyncio.gather(
            *(one_hostile_call(users, user.id, rng) for _ in range(CONCURRENCY))
        )
    # Some calls finished, some ran out of time, some were cancelled by the client.
    assert {"OK", "DEADLINE_EXCEEDED", "CANCELLED"} <= set(outcomes), Counter(outcomes)
    await returned_to_pool(running)
    # A cancelled call leaves the call layer a moment after its connection went back.
    async with asyncio.timeout(5):
        while running.calls.in_flight:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.05)
    assert await users.GetUser(user_service_pb2.GetUserRequest(id=user.id), timeout=5) == user
