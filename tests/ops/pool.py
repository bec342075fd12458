"""The server's connection pool, as the tests look at it."""

from __future__ import annotations

from sqlalchemy.pool import QueuePool

from service.server import RunningServer


def checked_out(running: RunningServer) -> int:
    """Connections of the server's pool that calls hold right now."""
    pool = running.engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()
