"""PostgreSQL plans: every order and filter of ListUsers is served by an index.

A seeded table (20k users, 40k addresses), ANALYZEd, and for each order_by and filter the
statement the server really sends (captured from its engine) is EXPLAINed: no sequential
scan of users, on page 1 or deep in the listing. Runs on PostgreSQL whatever
TEST_BACKENDS says: these indexes exist there only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.engine import create_engine
from service.db.migrate import upgrade
from service.db.uow import SqlUnitOfWork
from service.domain.models import User, View
from service.domain.queries import Cursor, Ordering, SortField, UserFilter, UsersPageQuery
from tests.backends import fresh_database
from tests.statements import recorded_statements

USERS = 20_000
DOMAINS = 50
ORDERINGS = [Ordering(f, d) for f in SortField for d in (False, True)]
FILTERS = {
    "none": UserFilter(),
    "email": UserFilter(email="u12345@d45.example"),
    "email_domain": UserFilter(email_domain="d7.example"),
    "address_email_contains": UserFilter(address_email_contains="b2c1547e"),
}

SEED = [
    # Names with many ties and create_times in runs of 100 equal values: the keyset
    # position must be an index condition, not a filter over the ties.
    f"""
    INSERT INTO users (name, email, email_domain, create_time, update_time, version)
    SELECT 'Name ' || (i % 500), 'u' || i || '@d' || (i % {DOMAINS}) || '.example',
           'd' || (i % {DOMAINS}) || '.example',
           TIMESTAMPTZ '2026-01-01' + (i / 100) * INTERVAL '1 second',
           now(), 1
    FROM generate_series(1, {USERS}) AS i
    """,
    """
    INSERT INTO addresses (user_id, email, create_time, update_time, version)
    SELECT id, md5(id || ':' || n) || '@mail' || (id % 7) || '.example', now(), now(), 1
    FROM users, generate_series(1, 2) AS n
    """,
]
# As a long-running table has them: statistics, and the trigram index's pending list
# (where GIN collects fresh inserts) merged, which plain ANALYZE does not do.
SETTLE = "VACUUM (ANALYZE) users, addresses"


@pytest.fixture(scope="module")
async def seeded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncEngine]:
    async with fresh_database("postgresql", tmp_path_factory.mktemp("plans")) as url:
        engine = create_engine(url, pool_size=2)
        try:
            assert engine.dialect.name == "postgresql"
            await upgrade(engine)
            async with engine.begin() as connection:
                for statement in SEED:
                    await connection.execute(text(statement))
            async with engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.exec_driver_sql(SETTLE)
            yield engine
        finally:
            await engine.dispose()


async def page_plan(
    engine: AsyncEngine, query: UsersPageQuery, explain: str = "EXPLAIN"
) -> tuple[str, list[User]]:
    """The plan PostgreSQL makes for the very statement that got the page, and its rows."""
    with recorded_statements(engine) as sent:
        async with SqlUnitOfWork(engine) as uow:
            rows = list(await uow.users.list_page(query))
    (statement, parameters), *_rest = sent
    async with engine.connect() as connection:
        plan = await connection.exec_driver_sql(f"{explain} {statement}", parameters)
        return "\n".join(str(line) for (line,) in plan), rows


def query(user_filter: UserFilter, ordering: Ordering, after: Cursor | None) -> UsersPageQuery:
    return UsersPageQuery(user_filter, ordering, after, limit=51, view=View.BASIC)


@pytest.mark.parametrize("ordering", ORDERINGS, ids=lambda o: o.text.replace(" ", "_"))
@pytest.mark.parametrize("filter_name", list(FILTERS))
async def test_no_sequential_scan_of_users(
    seeded: AsyncEngine, filter_name: str, ordering: Ordering
) -> None:
    user_filter = FILTERS[filter_name]
    plan, rows = await page_plan(seeded, query(user_filter, ordering, None))
    assert rows, f"the seed has no rows for {filter_name}"
    assert "Seq Scan on users" not in plan, plan
    last = rows[-1]
    deeper, more = await page_plan(
        seeded, query(user_filter, ordering, Cursor(ordering.key_of(last), last.id))
    )
    assert "Seq Scan on users" not in deeper, deeper
    assert not {u.id for u in more} & {u.id for u in rows}


@pytest.mark.parametrize("ordering", ORDERINGS[:2] + ORDERINGS[-2:], ids=str)
async def test_keyset_position_is_an_index_condition(
    seeded: AsyncEngine, ordering: Ordering
) -> None:
    """Deep in a run of ties the index is entered at the position, not scanned up to it."""
    async with seeded.connect() as connection:
        row = (await connection.execute(text("SELECT * FROM users WHERE id = 15050"))).one()
    key = {SortField.ID: row.id, SortField.CREATE_TIME: row.create_time}.get(
        ordering.field, getattr(row, ordering.field.value)
    )
    plan, rows = await page_plan(
        seeded, query(UserFilter(), ordering, Cursor(key, row.id)), "EXPLAIN (ANALYZE)"
    )
    assert len(rows) == 51
    assert "Index Cond" in plan and "Rows Removed" not in plan, plan
    assert " Sort " not in plan, plan  # the index gives the order


async def test_address_search_uses_the_trigram_index(seeded: AsyncEngine) -> None:
    async with seeded.connect() as connection:
        available = await connection.scalar(
            text("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_addresses_email_trgm'")
        )
    assert available == 1, "pg_trgm is installable here, so migration 0002 must create it"
    plan, rows = await page_plan(
        seeded, query(FILTERS["address_email_contains"], ORDERINGS[0], None)
    )
    assert "ix_addresses_email_trgm" in plan, plan
    assert [u.id for u in rows] == sorted(u.id for u in rows)
