"""Automatic failover under load (issue 15, item 4): the service behind HAProxy, in front
of a Patroni pair with a synchronous standby; the leader's Patroni and postmaster are
SIGKILLed while creates with request ids run. Calls in the gap end UNAVAILABLE (never
INTERNAL), readiness says NOT_SERVING, writes succeed again within 5 s of the new leader
being up, without a restart of the service, and every acknowledged create is stored once."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from users.v1 import resources_pb2, user_service_pb2

from service.server import USER_SERVICE
from tests.ops.failover import FailoverCluster
from tests.process.server_process import ServerProcess, free_port
from tests.rpc import UserStub

WRITERS = 4
BEFORE_KILL_SECONDS = 2.0
AFTER_LEADER_SECONDS = 6.0
CALL_TIMEOUT_SECONDS = 10.0  # longer than a connection attempt: the service answers first
BACK_WITHIN_SECONDS = 5.0
DOMAIN = "failover.example"
SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass
class Log:
    calls: list[tuple[float, float, grpc.StatusCode]] = field(default_factory=list)
    acknowledged: dict[str, int] = field(default_factory=dict)  # request_id -> user id
    readiness: list[tuple[float, int | None]] = field(default_factory=list)


async def create(stub: UserStub, request_id: str, log: Log) -> bool:
    request = user_service_pb2.CreateUserRequest(
        user=resources_pb2.User(name="F", email=f"{request_id}@{DOMAIN}"), request_id=request_id
    )
    started = time.monotonic()
    try:
        user = await stub.CreateUser(request, timeout=CALL_TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError as error:
        log.calls.append((started, time.monotonic(), error.code()))
        return False
    log.calls.append((started, time.monotonic(), grpc.StatusCode.OK))
    log.acknowledged[request_id] = user.id
    return True


async def writer(stub: UserStub, log: Log, stop: asyncio.Event) -> None:
    """Creates; one that fails is sent again with its request_id until it is acknowledged."""
    while not stop.is_set():
        request_id = uuid.uuid4().hex
        while not await create(stub, request_id, log):  # noqa: ASYNC110 - retries a call
            await asyncio.sleep(0.05)


async def prober(channel: grpc.aio.Channel, log: Log, stop: asyncio.Event) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    while not stop.is_set():
        try:
            answer = await health.Check(
                health_pb2.HealthCheckRequest(service=USER_SERVICE), timeout=1
            )
            status: int | None = int(answer.status)
        except grpc.aio.AioRpcError:
            status = None
        log.readiness.append((time.monotonic(), status))
        await asyncio.sleep(0.2)


async def stored(url: str) -> dict[str, list[int]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT email, id FROM users WHERE email_domain = :d"), {"d": DOMAIN}
            )
            found: dict[str, list[int]] = {}
            for row in rows:
                found.setdefault(str(row.email), []).append(int(row.id))
            return found
    finally:
        await engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("route", ["haproxy", "multihost"])
async def test_the_service_rides_a_failover_without_a_restart(tmp_path: Path, route: str) -> None:
    """haproxy: the URL leads to HAProxy; multihost: the URL names both nodes and asks for
    the writable one (target_session_attrs=read-write), no proxy in between."""
    log = Log()
    with FailoverCluster() as cluster:
        port = free_port()
        url = cluster.url if route == "haproxy" else cluster.multihost_url
        args = ["--port", str(port), "--database-url", url, "--grace-seconds", "2"]
        with ServerProcess(tmp_path, args, port=port) as server:
            async with grpc.aio.insecure_channel(server.target) as channel:
                stub, stop = UserStub(channel), asyncio.Event()
                tasks = [asyncio.create_task(writer(stub, log, stop)) for _ in range(WRITERS)]
                tasks.append(asyncio.create_task(prober(channel, log, stop)))
                await asyncio.sleep(BEFORE_KILL_SECONDS)
                killed = time.monotonic()
                await asyncio.to_thread(cluster.kill_leader)
                await asyncio.to_thread(cluster.wait_for_leader, 60)
                leader_up = time.monotonic()
                await asyncio.sleep(AFTER_LEADER_SECONDS)
                stop.set()
                await asyncio.gather(*tasks)
            assert server.terminate(10) == 0, server.stderr
        assert "Traceback" not in server.stderr, server.stderr
        rows = await stored(cluster.url)

    codes = {code for _, _, code in log.calls}
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert grpc.StatusCode.UNAVAILABLE in codes, "no call fell in the gap"
    # Readiness went NOT_SERVING in the gap and came back without a restart.
    gap = [status for at, status in log.readiness if killed <= at <= leader_up]
    assert any(status != SERVING for status in gap), gap
    assert log.readiness[-1][1] == SERVING
    # Writes back within 5 s of the new leader.
    back = min(
        ended for _, ended, code in log.calls if code is grpc.StatusCode.OK and ended > leader_up
    )
    assert back - leader_up <= BACK_WITHIN_SECONDS, back - leader_up
    # Every acknowledged create is stored, once, with the id it was acknowledged with.
    acknowledged = {f"{rid}@{DOMAIN}": [user_id] for rid, user_id in log.acknowledged.items()}
    assert {email: rows.get(email) for email in acknowledged} == acknowledged
    assert set(rows) == set(acknowledged), "a create no one acknowledged"
