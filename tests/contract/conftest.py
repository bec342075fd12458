"""The contract suite runs on every backend and, in front of PostgreSQL, through PgBouncer
in transaction mode as well (API.md, --database-pooler pgbouncer; tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.backends import selected_backends

SERVED_BACKENDS = selected_backends() + (
    ("pgbouncer",) if "postgresql" in selected_backends() else ()
)


@pytest.fixture(scope="session", params=SERVED_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
