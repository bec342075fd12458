"""The sequencer's probe for changes without a position is an index seek on every
backend, however long the numbered log behind it (migration 0006).

Without the index, PostgreSQL walked the primary key from the log's first change past
every numbered one, each round, so a long log saturated the database under writes
(BENCHMARKS.md). A log of numbered changes with a few waiting at its end, its
statistics fresh, and the very statement the sequencer sends EXPLAINed.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.change_log import SqlChangeLog
from service.db.engine import create_engine
from service.db.migrate import upgrade
from service.db.tables import user_changes
from service.domain.models import utc_now
from tests.backends import fresh_database
from tests.statements import recorded_statements

NUMBERED = 20_000
WAITING = 5
# What each backend calls the index in its plan, and how it is asked for the plan.
INDEX = {
    "postgresql": "ix_user_changes_unnumbered",
    "sqlite": "SEARCH user_changes USING COVERING INDEX",  # uq_user_changes_position's
    "mysql": "ix_user_changes_position_id",
}
EXPLAIN = {"postgresql": "EXPLAIN", "sqlite": "EXPLAIN QUERY PLAN", "mysql": "EXPLAIN"}
ANALYZE = {
    "postgresql": "ANALYZE user_changes",
    "sqlite": "ANALYZE",
    "mysql": "ANALYZE TABLE user_changes",
}


def change(position: int | None) -> dict[str, object]:
    now = utc_now()
    return {
        "position": position,
        "change_type": 1,
        "user_id": 1,
        "name": "N",
        "email": "n@plans.test",
        "email_domain": "plans.test",
        "create_time": now,
        "update_time": now,
        "version": 1,
    }


async def seed(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(insert(user_changes), [change(p) for p in range(1, NUMBERED + 1)])
        await connection.execute(insert(user_changes), [change(None) for _ in range(WAITING)])
        await connection.execute(
            text("UPDATE change_log_state SET last_position = :last WHERE id = 1"),
            {"last": NUMBERED},
        )
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql(ANALYZE[engine.dialect.name])


async def test_the_sequencers_probe_seeks_the_waiting_changes(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as url:
        engine = create_engine(url, pool_size=2)
        try:
            await upgrade(engine)
            await seed(engine)
            with recorded_statements(engine, lambda s: "IS NULL" in s) as sent:
                numbered = await SqlChangeLog(engine).sequence(limit=100)
            assert numbered == WAITING
            statement, parameters = sent[0]
            async with engine.connect() as connection:
                plan = await connection.exec_driver_sql(
                    f"{EXPLAIN[engine.dialect.name]} {statement}", parameters
                )
                described = "\n".join(" ".join(str(value) for value in row) for row in plan)
        finally:
            await engine.dispose()
    assert INDEX[engine.dialect.name] in described, described
    if engine.dialect.name == "postgresql":
        assert "user_changes_pkey" not in described, described
