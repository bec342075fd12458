"""The database goes away under a WatchUsers stream: the stream ends UNAVAILABLE with a
resume token, and a consumer that resumes with it once the database is back misses
nothing and sees nothing twice (issue 13, item 5)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from users.v1 import resources_pb2, user_service_pb2

from service.server import USER_SERVICE
from tests.ops.cluster import PrivateCluster, PrivateMariaDB
from tests.ops.test_database_outage import wait_for_health
from tests.process.server_process import ServerProcess, free_port
from tests.rpc import Failure, UserStub, failure_of, fresh_email

Change = user_service_pb2.UserChange
Watch = grpc.aio.UnaryStreamCall[user_service_pb2.WatchUsersRequest, Change]
DOMAIN = "outage.example"
WAIT_SECONDS = 15.0


async def create(stub: UserStub, name: str) -> resources_pb2.User:
    request = user_service_pb2.CreateUserRequest(
        user=resources_pb2.User(name=name, email=fresh_email(DOMAIN))
    )
    return await stub.CreateUser(request, timeout=5)


async def created_eventually(stub: UserStub, name: str) -> resources_pb2.User:
    """CreateUser, retried while the pool still holds connections of the stopped server."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            return await create(stub, name)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def read_changes(call: Watch, count: int) -> list[Change]:
    received: list[Change] = []
    async with asyncio.timeout(WAIT_SECONDS):
        while len(received) < count:
            message = await call.read()
            assert isinstance(message, Change), "the watch ended early"
            received.append(message)
    return received


@pytest.mark.slow
@pytest.mark.parametrize(
    "server_kind", [PrivateCluster, PrivateMariaDB], ids=["postgresql", "mariadb"]
)
async def test_an_outage_ends_the_watch_with_a_token_that_misses_nothing(
    tmp_path: Path, server_kind: type[PrivateCluster | PrivateMariaDB]
) -> None:
    serving = 1  # health_pb2.HealthCheckResponse.SERVING
    with server_kind() as cluster:
        port = free_port()
        args = ("--port", str(port), "--database-url", cluster.url, "--grace-seconds", "2")
        with ServerProcess(tmp_path, args, port=port) as process:
            async with grpc.aio.insecure_channel(process.target) as channel:
                stub = UserStub(channel)
                call = stub.WatchUsers(user_service_pb2.WatchUsersRequest(email_domain=DOMAIN))
                await call.initial_metadata()
                before = [await create(stub, f"before-{i}") for i in range(3)]
                seen = await read_changes(call, 3)
                assert [c.user.id for c in seen] == [u.id for u in before]

                await asyncio.to_thread(cluster.stop)
                failure = await failure_ending(call, seen)
                assert failure.code == grpc.StatusCode.UNAVAILABLE, failure
                assert failure.retry is not None
                assert failure.info is not None
                token = failure.info.metadata["resume_token"]
                assert token == seen[-1].resume_token

                await asyncio.to_thread(cluster.start)
                await wait_for_health(channel, USER_SERVICE, serving)
                after = [await created_eventually(stub, f"after-{i}") for i in range(3)]
                resumed = stub.WatchUsers(
                    user_service_pb2.WatchUsersRequest(email_domain=DOMAIN, resume_token=token)
                )
                again = await read_changes(resumed, 3)
                resumed.cancel()
            assert process.terminate(5) == 0, process.stderr
        assert "Traceback" not in process.stderr, process.stderr
    assert [c.user.id for c in again] == [u.id for u in after]
    assert all(c.type == Change.TYPE_CREATED for c in again)


async def failure_ending(call: Watch, seen: list[Change]) -> Failure:
    """Reads the stream to its end, which must be an error (changes read meanwhile are
    added to `seen`)."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                message = await call.read()
                assert isinstance(message, Change), "the watch ended without an error"
                seen.append(message)
    except grpc.aio.AioRpcError as error:
        return failure_of(error)
