"""The database goes away under load and comes back: UNAVAILABLE fast, then recovery."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from users.v1 import resources_pb2, user_service_pb2

from service.server import ADDRESS_SERVICE, USER_SERVICE
from tests.ops.cluster import PrivateCluster, PrivateMariaDB
from tests.process.server_process import ServerProcess, free_port
from tests.rpc import UserStub, create_user, failure_of, fresh_email

DEADLINE_SECONDS = 2.0
WORKERS = 6
# The prober pings every second; two periods and a margin.
READINESS_SECONDS = 3.0


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    code: grpc.StatusCode
    retry_info: bool
    message: str


async def load(stub: UserStub, user_id: int, outcomes: list[Outcome], stop: asyncio.Event) -> None:
    for n in itertools.count():
        if stop.is_set():
            return
        call: Awaitable[object]
        if n % 2:
            get = user_service_pb2.GetUserRequest(id=user_id)
            call = stub.GetUser(get, timeout=DEADLINE_SECONDS)
        else:
            user = resources_pb2.User(name="Load", email=fresh_email())
            request = user_service_pb2.CreateUserRequest(user=user)
            call = stub.CreateUser(request, timeout=DEADLINE_SECONDS)
        started = time.monotonic()
        try:
            await call
        except grpc.aio.AioRpcError as error:
            failure = failure_of(error)
            outcome = Outcome(
                started, time.monotonic(), failure.code, failure.retry is not None, failure.message
            )
        else:
            outcome = Outcome(started, time.monotonic(), grpc.StatusCode.OK, False, "")
        outcomes.append(outcome)
        await asyncio.sleep(0.02)


async def health_of(channel: grpc.aio.Channel, service: str) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=1
    )
    return int(response.status)


async def wait_for_health(channel: grpc.aio.Channel, service: str, status: int) -> float:
    started = time.monotonic()
    async with asyncio.timeout(READINESS_SECONDS):
        while await health_of(channel, service) != status:  # noqa: ASYNC110 - polls the server
            await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize(
    "server_kind", [PrivateCluster, PrivateMariaDB], ids=["postgresql", "mariadb"]
)
async def test_database_outage_is_unavailable_fast_and_recovers_without_restart(
    tmp_path: Path, server_kind: type[PrivateCluster | PrivateMariaDB]
) -> None:
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    with server_kind() as cluster:
        port = free_port()
        args = ("--port", str(port), "--database-url", cluster.url, "--grace-seconds", "2")
        with ServerProcess(tmp_path, args, port=port) as process:
            async with grpc.aio.insecure_channel(process.target) as channel:
                stub = UserStub(channel)
                user = await create_user(stub)
                outcomes: list[Outcome] = []
                stop = asyncio.Event()
                workers = [
                    asyncio.create_task(load(stub, user.id, outcomes, stop)) for _ in range(WORKERS)
                ]
                await asyncio.sleep(0.5)

                stopping = time.monotonic()
                await asyncio.to_thread(cluster.stop)
                down = time.monotonic()
                await wait_for_health(channel, USER_SERVICE, not_serving)
                await wait_for_health(channel, ADDRESS_SERVICE, not_serving)
                assert await health_of(channel, "") == serving
                await asyncio.sleep(1.0)

                restarting = time.monotonic()
                await asyncio.to_thread(cluster.start)
                up = time.monotonic()
                await wait_for_health(channel, USER_SERVICE, serving)
                await wait_for_health(channel, ADDRESS_SERVICE, serving)
                await asyncio.sleep(1.0)
                stop.set()
                await asyncio.gather(*workers)

                # A restart that no call sees: every pooled connection is now stale.
                await asyncio.to_thread(cluster.stop)
                await asyncio.to_thread(cluster.start)
                quiet_restart = await asyncio.gather(
                    *(
                        stub.GetUser(user_service_pb2.GetUserRequest(id=user.id), timeout=5)
                        for _ in range(2 * WORKERS)
                    ),
                    return_exceptions=True,
                )
            assert process.terminate(5) == 0, process.stderr
        assert "Traceback" not in process.stderr, process.stderr

    before = [o for o in outcomes if o.ended < stopping]
    during = [o for o in outcomes if down <= o.started and o.ended <= restarting]
    after = [o for o in outcomes if o.started >= up]
    assert before and during and after, (len(before), len(during), len(after))
    assert {o.code for o in before} == {grpc.StatusCode.OK}
    assert {o.code for o in during} == {grpc.StatusCode.UNAVAILABLE}, {o.message for o in during}
    assert all(o.retry_info for o in during)
    # No hang: a refused call returns at once, far inside its deadline.
    assert max(o.ended - o.started for o in during) < DEADLINE_SECONDS / 2
    # No stale pooled connection reaches a call once the database is back.
    assert {o.code for o in after} == {grpc.StatusCode.OK}, {o.message for o in after}
    assert quiet_restart == [user] * (2 * WORKERS), quiet_restart
    # Calls around the transitions either worked or were refused cleanly.
    assert {o.code for o in outcomes} <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
