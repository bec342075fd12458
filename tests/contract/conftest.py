"""The contract suite runs on every backend and, in front of PostgreSQL, through PgBouncer
in transaction mode as well (API.md, --database-pooler pgbouncer; tests/conftest.py): with
the server in this process, and as four worker processes sharing PgBouncer's 10 server
connections (issue 15). A test that looks inside the server (its engine, its pool) needs
the server in this process, so the worker processes take every test that does not."""

from __future__ import annotations

import pytest

from tests.backends import selected_backends

POOLED = ("pgbouncer", "pgbouncer-workers") if "postgresql" in selected_backends() else ()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    in_process = "running" in metafunc.fixturenames
    served = [
        *selected_backends(),
        *(b for b in POOLED if not (in_process and b == "pgbouncer-workers")),
    ]
    metafunc.parametrize("backend", served, indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
