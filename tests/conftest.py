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
from tests.process.server_process import ServerProcess, free_port
from tests.rpc import AddressStub, UserStub

CONTRACT = Path(__file__).parent / "contract"
POOLED = ("pgbouncer", "pgbouncer-workers") if "postgresql" in selected_backends() else ()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that takes `backend` runs on each selected database. The contract suite
    runs through PgBouncer in transaction mode as well (API.md, --database-pooler
    pgbouncer): against a server in this process ("pgbouncer"), and against four worker
    processes sharing PgBouncer's 10 server connections ("pgbouncer-workers", issue 15),
    which take every contract test that does not look inside the server (`running`).

    One `backend` fixture for the whole suite, parametrized here: with a second one (a
    conftest's override), the session fixtures that depend on it (`database_url`) were
    cached across the two and a PgBouncer test got another backend's database."""
    if "backend" not in metafunc.fixturenames or _parametrizes_backend(metafunc):
        return
    served = list(selected_backends())
    if metafunc.definition.path.is_relative_to(CONTRACT):
        in_process = "running" in metafunc.fixturenames
        served += [b for b in POOLED if not (in_process and b == "pgbouncer-workers")]
    metafunc.parametrize("backend", served, indirect=True, scope="session")


def _parametrizes_backend(metafunc: pytest.Metafunc) -> bool:
    """The test names its backends itself (@pytest.mark.parametrize("backend", ...))."""
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        names = names.split(",") if isinstance(names, str) else names
        if "backend" in (name.strip() for name in names):
            return True
    return False


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The database a test runs on (pytest_generate_tests): "sqlite", "postgresql",
    "mysql", or PostgreSQL behind PgBouncer ("pgbouncer", "pgbouncer-workers")."""
    return str(request.param)


@pytest.fixture(scope="session")
async def database_url(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The database itself, for tests that look at it directly (through PgBouncer's
    backend too: only the server under test goes through the pooler)."""
    # An unreachable backend raises here: a loud error, never a skip.
    database = "postgresql" if backend.startswith("pgbouncer") else backend
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
    if backend == "pgbouncer-workers":
        raise LookupError("a server in worker processes has no in-process state to look at")
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
def target(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """host:port of the server under test: in this process, or (pgbouncer-workers) a
    `serve --workers 4` process behind PgBouncer, LISTEN on the direct URL."""
    if backend != "pgbouncer-workers":
        running: server.RunningServer = request.getfixturevalue("running")
        yield f"127.0.0.1:{running.port}"
        return
    direct: str = request.getfixturevalue("database_url")
    pooled: PgBouncer = request.getfixturevalue("pgbouncer")
    port = free_port()
    args = [
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "4"),
        *("--database-url", pooled.url_for(direct), "--database-pooler", "pgbouncer"),
        *("--direct-database-url", direct),
    ]
    with ServerProcess(tmp_path_factory.mktemp("workers"), args, port=port) as workers:
        yield workers.target
        assert workers.terminate(timeout=30) == 0, workers.stderr


@pytest.fixture(scope="session")
async def channel(target: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(target) as opened:
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
