"""--database-pooler pgbouncer: no statement outside a transaction, none kept by name, and
LISTEN only on a URL that reaches PostgreSQL itself."""

from __future__ import annotations

from service.config import Settings
from service.db.change_log import listen_url_of
from service.db.engine import create_engine
from service.db.uow import SqlUnitOfWorkFactory

DIRECT = "postgresql+asyncpg://postgres@127.0.0.1:5432/users"
POOLED = "postgresql+asyncpg://postgres@127.0.0.1:6432/users"


def test_listen_goes_around_the_pooler_or_not_at_all() -> None:
    assert (
        listen_url_of(Settings(database_url=DIRECT)) == "postgresql://postgres@127.0.0.1:5432/users"
    )
    pooled = Settings(database_url=POOLED, database_pooler="pgbouncer")
    assert listen_url_of(pooled) is None  # the feed polls
    with_direct = Settings(
        database_url=POOLED, database_pooler="pgbouncer", direct_database_url=DIRECT
    )
    assert listen_url_of(with_direct) == "postgresql://postgres@127.0.0.1:5432/users"
    assert listen_url_of(Settings(database_url="sqlite+aiosqlite:///x.db")) is None


async def test_behind_pgbouncer_statements_are_unnamed_and_reads_are_transactions() -> None:
    engine = create_engine(POOLED, pooler="pgbouncer")
    try:
        options = engine.dialect.create_connect_args(engine.url)[1]
        assert options["prepared_statement_cache_size"] == 0
        unit = SqlUnitOfWorkFactory(engine, autocommit_reads=False).reading()
        assert unit._transactional
        direct = create_engine(DIRECT)
        try:
            assert not SqlUnitOfWorkFactory(direct).reading()._transactional
        finally:
            await direct.dispose()
    finally:
        await engine.dispose()
