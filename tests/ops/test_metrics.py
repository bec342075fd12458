"""--metrics-port: Prometheus counts calls by method and code, latency, in-flight, pool."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from users.v1 import user_service_pb2

from service import server
from service.config import Settings
from tests.ops.loaded_modules import modules_after_a_call
from tests.process.server_process import ServerProcess, free_port, sqlite_url
from tests.rpc import UserStub, create_user, fails

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def method(name: str) -> dict[str, str]:
    return {"grpc_service": "users.v1.UserService", "grpc_method": name}


@pytest.fixture
async def measured(tmp_path: Path) -> AsyncIterator[server.RunningServer]:
    settings = Settings(
        host="127.0.0.1", port=0, database_url=sqlite_url(tmp_path / "users.db"), metrics_port=0
    )
    running = await server.start(settings)
    yield running
    await running.stop(grace=1)


async def test_metrics_count_calls_by_method_and_code_and_show_the_pool(
    measured: server.RunningServer,
) -> None:
    assert measured.metrics_endpoint is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{measured.port}") as channel:
        users = UserStub(channel)
        created = [await create_user(users) for _ in range(3)]
        await users.GetUser(user_service_pb2.GetUserRequest(id=created[0].id))
        for _ in range(2):
            await fails(users.GetUser(user_service_pb2.GetUserRequest(id=10**12)))
        await fails(users.GetUser(user_service_pb2.GetUserRequest(id=-1)))
    await asyncio.sleep(1.2)  # the pool gauges follow the readiness prober's tick
    samples = await asyncio.to_thread(scrape, measured.metrics_endpoint.port)

    handled = "grpc_server_handled_total"
    assert value(samples, handled, **method("CreateUser"), grpc_code="OK") == 3
    assert value(samples, handled, **method("GetUser"), grpc_code="OK") == 1
    assert value(samples, handled, **method("GetUser"), grpc_code="NOT_FOUND") == 2
    assert value(samples, handled, **method("GetUser"), grpc_code="INVALID_ARGUMENT") == 1
    assert value(samples, "grpc_server_handling_seconds_count", **method("GetUser")) == 4
    latency = "grpc_server_handling_seconds"
    assert value(samples, f"{latency}_bucket", **method("GetUser"), le="+Inf") == 4
    assert value(samples, "grpc_server_handling_seconds_sum", **method("CreateUser")) > 0
    assert value(samples, "grpc_server_in_flight_calls", **method("GetUser")) == 0
    assert value(samples, "users_db_pool_size") == 1  # SQLite: one shared connection
    assert value(samples, "users_db_pool_open_connections") == 1
    assert value(samples, "users_db_pool_checked_out") == 0


async def test_metrics_show_readiness_the_pool_s_capacity_streamed_users_and_the_process(
    measured: server.RunningServer,
) -> None:
    assert measured.metrics_endpoint is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{measured.port}") as channel:
        users = UserStub(channel)
        created = [await create_user(users) for _ in range(3)]
        request = user_service_pb2.StreamUsersRequest(after_id=created[0].id - 1, batch_size=2)
        streamed = [message async for message in users.StreamUsers(request)]
    assert sum(len(message.users) for message in streamed) == 3
    await asyncio.sleep(1.2)  # the gauges follow the readiness prober's tick
    samples = await asyncio.to_thread(scrape, measured.metrics_endpoint.port)

    assert value(samples, "users_streamed_users_total") == 3
    assert value(samples, "users_ready") == 1
    assert value(samples, "users_db_pool_capacity") == 1  # SQLite: one shared connection
    assert value(samples, "users_change_feed_lag_seconds") == 0
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "process_resident_memory_bytes") > 10_000_000


@pytest.mark.slow
async def test_workers_metrics_are_summed_by_the_parent(tmp_path: Path, postgres_url: str) -> None:
    port, metrics_port = free_port(), free_port()
    args = [
        *("--port", str(port), "--database-url", postgres_url, "--workers", "2"),
        *("--metrics-port", str(metrics_port)),
    ]
    with ServerProcess(tmp_path, args, port=port) as process:
        for _ in range(12):
            # A channel per call: connections spread over the workers.
            async with grpc.aio.insecure_channel(process.target) as channel:
                await create_user(UserStub(channel))
        deadline = time.monotonic() + 10
        while True:
            samples = await asyncio.to_thread(scrape, metrics_port)
            # Both workers' pools (20 each) are reported once their probers ticked; a tick
            # taken while one of the calls above held a connection is stale until the next.
            settled = (
                value(samples, "users_db_pool_size") == 40
                and value(samples, "users_db_pool_checked_out") == 0
            )
            if settled or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert process.terminate(10) == 0, process.stderr
    assert value(samples, "grpc_server_handled_total", **method("CreateUser"), grpc_code="OK") == 12
    assert value(samples, "users_db_pool_size") == 40
    assert value(samples, "users_db_pool_checked_out") == 0
    assert value(samples, "users_ready") == 1
    # The parent's and both workers' memory: three Python processes.
    assert value(samples, "process_resident_memory_bytes") > 3 * 20_000_000


def test_without_a_metrics_port_no_prometheus_module_is_loaded(tmp_path: Path) -> None:
    """A server started through the command line's module and called, in a process of
    its own, --metrics-port unset: prometheus-client stays out of its memory."""
    url = sqlite_url(tmp_path / "users.db")
    assert modules_after_a_call(url, ("prometheus_client", "wsgiref")) == []
