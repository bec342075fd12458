"""The call layer on its own: a drain ends open server streams with UNAVAILABLE."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc
import pytest

from service.api.calls import CallLayer, Ctx, Method
from service.config import Settings
from service.server import server_options
from tests.rpc import failure_of

SERVICE = "test.v1.Fake"


def identity(data: bytes) -> bytes:
    return data


class FakeServer:
    def __init__(self, max_in_flight: int | None = None) -> None:
        self.layer = CallLayer(max_in_flight=max_in_flight)
        self.closed: list[str] = []

    async def waits_for_changes(self, request: bytes, context: Ctx) -> AsyncGenerator[bytes, None]:
        try:
            yield b"first"
            await asyncio.sleep(3600)  # a watch with nothing to report
        finally:
            self.closed.append("waits")

    async def keeps_sending(self, request: bytes, context: Ctx) -> AsyncGenerator[bytes, None]:
        try:
            for n in itertools.count():
                yield str(n).encode()
                await asyncio.sleep(0)
        finally:
            self.closed.append("sends")

    async def echo(self, request: bytes, context: Ctx) -> bytes:
        return request

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        def method(name: str) -> Method:
            return Method(service=SERVICE, name=name, writes=False)

        layer = self.layer
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Waits": grpc.unary_stream_rpc_method_handler(
                    layer.server_stream(method("Waits"), self.waits_for_changes),
                    identity,
                    identity,
                ),
                "Sends": grpc.unary_stream_rpc_method_handler(
                    layer.server_stream(method("Sends"), self.keeps_sending), identity, identity
                ),
                "Echo": grpc.unary_unary_rpc_method_handler(
                    layer.unary(method("Echo"), self.echo), identity, identity
                ),
            },
        )


@pytest.fixture
async def fake(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[FakeServer, grpc.aio.Channel]]:
    fake = FakeServer(max_in_flight=getattr(request, "param", None))
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((fake.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield fake, channel
    await server.stop(0)


async def read_all(call: Any) -> tuple[list[bytes], grpc.aio.AioRpcError]:
    received: list[bytes] = []
    try:
        async for message in call:
            received.append(message)
    except grpc.aio.AioRpcError as error:
        return received, error
    raise AssertionError(f"the stream ended cleanly after {len(received)} messages")


async def test_drain_ends_a_waiting_stream_and_a_sending_stream_with_unavailable(
    fake: tuple[FakeServer, grpc.aio.Channel],
) -> None:
    server, channel = fake
    waits = channel.unary_stream(f"/{SERVICE}/Waits", identity, identity)(b"", timeout=10)
    sends = channel.unary_stream(f"/{SERVICE}/Sends", identity, identity)(b"", timeout=10)
    waiting = asyncio.create_task(read_all(waits))
    sending = asyncio.create_task(read_all(sends))
    await asyncio.sleep(0.3)
    server.layer.begin_draining()
    async with asyncio.timeout(5):
        (waited, waits_error), (sent, sends_error) = await asyncio.gather(waiting, sending)
    assert waited == [b"first"] and len(sent) > 1
    for error in (waits_error, sends_error):
        failure = failure_of(error)
        assert failure.code == grpc.StatusCode.UNAVAILABLE, failure.message
        assert failure.info is not None and failure.info.reason == "SERVER_DRAINING"
        assert failure.retry is not None
    assert sorted(server.closed) == ["sends", "waits"]
    async with asyncio.timeout(5):
        await server.layer.drained(quiet=0)
    assert server.layer.in_flight == 0


async def test_calls_after_the_drain_began_are_refused_with_unavailable(
    fake: tuple[FakeServer, grpc.aio.Channel],
) -> None:
    server, channel = fake
    echo = channel.unary_unary(f"/{SERVICE}/Echo", identity, identity)
    assert await echo(b"hi", timeout=5) == b"hi"
    server.layer.begin_draining()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await echo(b"hi", timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_drain_waits_for_clients_between_two_calls_before_it_counts_as_drained(
    fake: tuple[FakeServer, grpc.aio.Channel],
) -> None:
    # SIGTERM while every client sat between two calls: none in flight, none refused yet.
    # Their next calls must still meet the call layer's UNAVAILABLE, not grpc's stop.
    server, channel = fake
    echo = channel.unary_unary(f"/{SERVICE}/Echo", identity, identity)
    assert await echo(b"hi", timeout=5) == b"hi"
    server.layer.begin_draining()
    began = time.monotonic()
    await server.layer.drained(quiet=0.3)
    assert time.monotonic() - began >= 0.3


@pytest.mark.parametrize("stop", ["cancel", "deadline"])
async def test_a_stream_the_client_left_is_closed_inside_the_call(
    fake: tuple[FakeServer, grpc.aio.Channel], caplog: pytest.LogCaptureFixture, stop: str
) -> None:
    # The access log line at INFO, as the server ships: once, reading the peer of a call
    # that had ended crashed the process (issue 11).
    caplog.set_level(logging.INFO, logger="users.calls")
    server, channel = fake
    sends = channel.unary_stream(f"/{SERVICE}/Sends", identity, identity)
    for _ in range(20):
        call = sends(b"", timeout=0.05 if stop == "deadline" else 10)
        if stop == "cancel":
            async for _message in call:
                break
            call.cancel()
        else:
            with pytest.raises(grpc.aio.AioRpcError):
                async for _message in call:
                    pass
    # Closed by the call itself, not later by the garbage collector: nothing is left open.
    async with asyncio.timeout(5):
        while server.layer.in_flight or len(server.closed) < 20:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.01)
    gc.collect()
    await asyncio.sleep(0.1)
    assert server.closed == ["sends"] * 20
    ended = [r for r in caplog.records if r.name == "users.calls"]
    assert len(ended) == 20
    expected = "CANCELLED" if stop == "cancel" else "DEADLINE_EXCEEDED"
    assert {r.__dict__["code"] for r in ended} == {expected}
    assert all(r.__dict__["peer"].startswith("ipv4:127.0.0.1:") for r in ended)


@pytest.mark.parametrize("fake", [2], indirect=True)
async def test_calls_past_the_in_flight_bound_are_refused_at_once_with_retry_info(
    fake: tuple[FakeServer, grpc.aio.Channel],
) -> None:
    server, channel = fake
    waits = channel.unary_stream(f"/{SERVICE}/Waits", identity, identity)
    echo = channel.unary_unary(f"/{SERVICE}/Echo", identity, identity)
    held = [waits(b"", timeout=10)]
    assert await held[0].read() == b"first"
    assert await echo(b"second", timeout=5) == b"second"  # 2 in flight: within the bound
    held.append(waits(b"", timeout=10))
    assert await held[1].read() == b"first"
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await echo(b"third", timeout=5)
    assert time.monotonic() - started < 1
    failure = failure_of(refused.value)
    assert failure.code == grpc.StatusCode.UNAVAILABLE, failure.message
    assert failure.info is not None and failure.info.reason == "OVERLOADED"
    assert failure.retry is not None and failure.retry.retry_delay.seconds >= 1
    for call in held:
        call.cancel()
    async with asyncio.timeout(5):
        while server.layer.in_flight:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.01)
    assert await echo(b"again", timeout=5) == b"again"


async def test_streams_past_the_per_connection_limit_wait_in_the_client() -> None:
    fake = FakeServer()
    server = grpc.aio.server(options=server_options(Settings(max_concurrent_streams=2)))
    server.add_generic_rpc_handlers((fake.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            waits = channel.unary_stream(f"/{SERVICE}/Waits", identity, identity)
            held = [waits(b"", timeout=10) for _ in range(2)]
            for call in held:
                assert await call.read() == b"first"
            third = waits(b"", timeout=10)
            reading = asyncio.ensure_future(third.read())
            done, _ = await asyncio.wait([reading], timeout=0.5)
            assert not done, "a third stream ran past the limit of two"
            held[0].cancel()  # a slot frees: the third starts, nothing was refused
            assert await asyncio.wait_for(reading, 5) == b"first"
            for call in (held[1], third):
                call.cancel()
    finally:
        await server.stop(0)
