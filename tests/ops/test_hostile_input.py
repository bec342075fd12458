"""Random, malformed and undecodable requests to every method: only contract statuses,
never INTERNAL or UNKNOWN, and the server keeps serving; bursts queue, never crash."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from users.v1 import resources_pb2, user_service_pb2

from service import server
from tests.ops.messages import payloads
from tests.ops.pool import checked_out
from tests.rpc import UserStub, create_user, failure_of, fresh_email

Code = grpc.StatusCode
# API.md "Errors": the codes a client may see; INTERNAL and UNKNOWN are bugs here.
CONTRACT_CODES = {
    Code.INVALID_ARGUMENT,
    Code.NOT_FOUND,
    Code.ALREADY_EXISTS,
    Code.ABORTED,
    Code.FAILED_PRECONDITION,
    Code.UNAVAILABLE,
}
METHODS = [
    method
    for service in (server.USER_SERVICE_DESCRIPTOR, server.ADDRESS_SERVICE_DESCRIPTOR)
    for method in service.methods
]
# A server stream that sends nothing this long is waiting for data (WatchUsers): it took
# the request, which is all this test asks.
FIRST_MESSAGE_SECONDS = 1.0


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def check_failure(method: MethodDescriptor, error: grpc.aio.AioRpcError) -> None:
    failure = failure_of(error)
    where = f"{path_of(method)}: {failure.code.name} {failure.message!r}"
    info = failure.info
    assert info is not None and info.domain == "users.v1", f"no ErrorInfo: {where}"
    assert failure.code in CONTRACT_CODES, where
    assert "Traceback" not in failure.message and "\x00" not in failure.message, where


async def send(channel: grpc.aio.Channel, method: MethodDescriptor, payloads: list[bytes]) -> None:
    """Sends raw bytes (no serializer: they need not be a valid message)."""
    path = path_of(method)
    try:
        if method.client_streaming:
            await channel.stream_unary(path, None, None)(iter(payloads), timeout=10)
        elif method.server_streaming:
            call: Any = channel.unary_stream(path, None, None)(payloads[0], timeout=10)
            try:
                async with asyncio.timeout(FIRST_MESSAGE_SECONDS):
                    await call.read()
            except TimeoutError:
                call.cancel()
            else:
                call.cancel()
        else:
            await channel.unary_unary(path, None, None)(payloads[0], timeout=10)
    except grpc.aio.AioRpcError as error:
        check_failure(method, error)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
async def test_random_and_malformed_requests_get_contract_statuses(
    channel: grpc.aio.Channel, method: MethodDescriptor, data: st.DataObject
) -> None:
    count = data.draw(st.integers(1 if not method.client_streaming else 0, 3), "messages")
    sent = [data.draw(payloads(method.input_type), f"payload {n}") for n in range(max(count, 1))]
    await send(channel, method, sent[:count] if method.client_streaming else sent)


async def test_server_keeps_serving_after_hostile_input(
    channel: grpc.aio.Channel, users: UserStub
) -> None:
    for method in METHODS:
        await send(channel, method, [b"\xff" * 8, b"\x0a\xff\xff\xff\xff\x0f"])
    checked = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=server.USER_SERVICE), timeout=5
    )
    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    user = await create_user(users)
    assert await users.GetUser(user_service_pb2.GetUserRequest(id=user.id), timeout=5) == user


async def test_undecodable_bytes_are_invalid_argument_naming_the_message(
    channel: grpc.aio.Channel,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        get_user = channel.unary_unary("/users.v1.UserService/GetUser", None, None)
        await get_user(b"\xff\xff", timeout=5)
    failure = failure_of(raised.value)
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.info is not None and failure.info.reason == "MALFORMED_REQUEST"
    assert failure.fields == ["request"]
    assert "users.v1.GetUserRequest" in failure.message


@pytest.mark.slow
async def test_burst_beyond_the_pool_queues_or_is_unavailable_never_crashes(
    running: server.RunningServer, users: UserStub
) -> None:
    user = await create_user(users)

    async def one(n: int) -> Code:
        try:
            if n % 2:
                await users.GetUser(user_service_pb2.GetUserRequest(id=user.id), timeout=60)
            else:
                request = user_service_pb2.CreateUserRequest(
                    user=resources_pb2.User(name="Burst", email=fresh_email())
                )
                await users.CreateUser(request, timeout=60)
        except grpc.aio.AioRpcError as error:
            failure = failure_of(error)
            assert failure.code == Code.UNAVAILABLE and failure.retry is not None, failure
            return failure.code
        return Code.OK

    codes = await asyncio.gather(*(one(n) for n in range(1000)))
    assert set(codes) <= {Code.OK, Code.UNAVAILABLE}
    assert codes.count(Code.OK) > 0
    assert running.calls.in_flight == 0
    assert checked_out(running) == 0
    assert await users.GetUser(user_service_pb2.GetUserRequest(id=user.id), timeout=5) == user
