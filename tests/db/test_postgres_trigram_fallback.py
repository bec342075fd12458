"""Migration 0002 on PostgreSQL without the right to create pg_trgm: no trigram index, a
clean migration, and address_email_contains still answers (by scanning instead)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.db.engine import create_engine
from service.db.migrate import upgrade
from service.db.uow import SqlUnitOfWork
from service.domain.models import NewUser, View, utc_now
from service.domain.queries import Ordering, UserFilter, UsersPageQuery
from tests.backends import ADMIN_URLS, fresh_database


@pytest.fixture
async def unprivileged_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A fresh PostgreSQL database and a role that may create tables in it, but not
    extensions (CREATE on the database is what a trusted extension needs)."""
    role = f"users_noext_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(ADMIN_URLS["postgresql"], isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f"CREATE ROLE {role} LOGIN"))
        async with fresh_database("postgresql", tmp_path_factory.mktemp("noext")) as url:
            owner = create_async_engine(url, isolation_level="AUTOCOMMIT")
            try:
                async with owner.connect() as connection:
                    assert connection.dialect.name == "postgresql"
                    await connection.execute(text(f"GRANT CREATE ON SCHEMA public TO {role}"))
            finally:
                await owner.dispose()
            yield make_url(url).set(username=role).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP ROLE IF EXISTS {role}"))
        await admin.dispose()


async def trigram_state(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as connection:
        extensions = await connection.scalar(
            text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")
        )
        indexes = await connection.scalar(
            text("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_addresses_email_trgm'")
        )
    return int(extensions or 0), int(indexes or 0)


async def test_migrates_without_pg_trgm_and_still_searches(
    unprivileged_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(unprivileged_url, pool_size=2)
    try:
        with caplog.at_level(logging.WARNING, logger="users.migrations"):
            await upgrade(engine)
        assert "pg_trgm is unavailable" in caplog.text
        assert await trigram_state(engine) == (0, 0)
        async with SqlUnitOfWork(engine) as uow:
            email = f"{uuid.uuid4().hex[:8]}@x.io"
            user_id = await uow.users.insert(
                NewUser(name="Ana", email=email, address_emails=("needle_1@y.io",)), utc_now()
            )
            await uow.commit()
        query = UsersPageQuery(
            UserFilter(address_email_contains="dle_1"), Ordering(), None, 10, View.FULL
        )
        async with SqlUnitOfWork(engine) as uow:
            found = await uow.users.list_page(query)
        assert [u.id for u in found] == [user_id]
    finally:
        await engine.dispose()
