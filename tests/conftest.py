"""Fixtures: a real server on port 0 per backend, real channels, stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from service import server
from service.config import Settings
from tests.backends import ADMIN_URLS, fresh_database, selected_backends
from tests.pgbouncer import PgBouncer
from tests.rpc import AddressStub, UserStub


@pytest.fixture(scope="session", params=selected_backends())
def backend(request: pytest.FixtureRequest) -> str:
    """The database a test runs on; the contract suite adds "pgbouncer" (its conftest):
    PostgreSQL, with the server under test going through PgBouncer."""
    return str(request.param)


@pytest.fixture(scope="session")
async def database_url(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The database itself, for tests that look at it directly (through PgBouncer's
    backend too: only the server under test goes through the pooler)."""
    # An unreachable backend raises here: a loud error, never a skip.
    database = "postgresql" if backend == "pgbouncer" else backend
    async with fresh_database(database, tmp_path_factory.mktemp(backend)) as url:
        yield url


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncer]:
    with PgBouncer(ADMIN_URLS["postgresql"]) as started:
        yield started


@pytest.fixture(scope="session")
async def running(
    backend: str, database_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[server.RunningServer]:
    settings = Settings(host="127.0.0.1", port=0, database_url=database_url)
    if backend == "pgbouncer":
        pooled: PgBouncer = request.getfixturevalue("pgbouncer")
        settings = replace(
            settings, database_url=pooled.url_for(database_url), database_pooler="pgbouncer"
        )
    started = await server.start(settings)
    yield started
    await started.stop(grace=1)


@pytest.fixture(scope="session")
async def channel(running: server.RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as opened:
        yield opened


@pytest.fixture(scope="session")
def users(channel: grpc.aio.Channel) -> UserStub:
    return UserStub(channel)


@pytest.fixture(scope="session")
def addresses(channel: grpc.aio.Channel) -> AddressStub:
    return AddressStub(channel)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
