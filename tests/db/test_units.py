"""Units of work on every backend: a writing unit is one transaction however many
statements it sends, and a reading unit has nothing to commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from sqlalchemy import event, func, select

from service import server
from service.db.tables import user_changes, users
from service.db.uow import SqlUnitOfWorkFactory
from service.domain.errors import EmailTakenError
from service.domain.models import NewUser, User, View, utc_now
from service.domain.queries import Ordering, UserFilter, UsersPageQuery
from tests.statements import recorded_statements


def new_user(email: str | None = None) -> NewUser:
    return NewUser(name="Unit", email=email or f"{uuid.uuid4().hex[:12]}@units.test")


async def committed_user(units: SqlUnitOfWorkFactory) -> User:
    async with units.writing() as uow:
        created = await uow.users.create(new_user(), utc_now())
        await uow.commit()
    return created


async def stored(running: server.RunningServer, email: str) -> int:
    async with running.engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(users).where(users.c.email == email)
        )
    return int(count or 0)


@contextmanager
def opened_connections(running: server.RunningServer) -> Iterator[list[object]]:
    """SQLAlchemy Connections opened on the server's engine while the block runs (every
    unit opens one; a statement run alone does not)."""
    connected: list[object] = []

    def record(connection: object) -> None:
        connected.append(connection)

    event.listen(running.engine.sync_engine, "engine_connect", record)
    try:
        yield connected
    finally:
        event.remove(running.engine.sync_engine, "engine_connect", record)


async def recorded_changes(running: server.RunningServer, user_id: int) -> int:
    async with running.engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(user_changes).where(user_changes.c.user_id == user_id)
        )
    return int(count or 0)


async def test_a_single_statement_write_left_without_commit_is_rolled_back(
    running: server.RunningServer,
) -> None:
    # The one-INSERT CreateUser: once sent in autocommit, durable however the unit ended.
    new = new_user()
    async with SqlUnitOfWorkFactory(running.engine).writing() as uow:
        await uow.users.create(new, utc_now())
    assert await stored(running, new.email) == 0


async def test_a_user_without_addresses_is_created_by_one_statement_alone_on_postgresql(
    running: server.RunningServer,
) -> None:
    # create_user (CreateUser without request_id): on PostgreSQL a user without addresses
    # is one INSERT on a pooled connection taken for it alone, past SQLAlchemy's
    # Connection and with no transaction around it; its change record is written by the
    # same statement. Elsewhere, and with addresses, a writing unit.
    units = SqlUnitOfWorkFactory(running.engine)
    new = new_user()
    with opened_connections(running) as connected:
        created = await units.create_user(new, utc_now())
        with pytest.raises(EmailTakenError):
            await units.create_user(new_user(new.email), utc_now())
    assert (connected == []) == (running.engine.dialect.name == "postgresql")
    assert created.email == new.email and created.addresses == ()
    assert await stored(running, new.email) == 1
    assert await recorded_changes(running, created.id) == 1
    async with units.reading() as reader:
        assert await reader.users.get_one(created.id, View.FULL) == created


async def test_a_user_with_addresses_is_created_in_one_transaction(
    running: server.RunningServer,
) -> None:
    units = SqlUnitOfWorkFactory(running.engine)
    taken = await committed_user(units)
    new = NewUser(name="Unit", email=new_user().email, address_emails=(taken.email,))
    created = await units.create_user(new, utc_now())
    assert [a.email for a in created.addresses or ()] == [taken.email]
    # The user's own email taken: nothing of it is kept.
    clash = NewUser(name="Unit", email=taken.email, address_emails=(new_user().email,))
    with pytest.raises(EmailTakenError):
        await units.create_user(clash, utc_now())
    assert await stored(running, taken.email) == 1


async def test_a_write_whose_second_statement_fails_keeps_nothing_of_the_first(
    running: server.RunningServer,
) -> None:
    first, taken = new_user(), new_user()
    units = SqlUnitOfWorkFactory(running.engine)
    async with units.writing() as uow:
        await uow.users.create(taken, utc_now())
        await uow.commit()
    with pytest.raises(EmailTakenError):
        async with units.writing() as uow:
            await uow.users.create(first, utc_now())
            await uow.users.create(new_user(taken.email), utc_now())
            await uow.commit()
    assert await stored(running, first.email) == 0
    assert await stored(running, taken.email) == 1


async def test_a_reading_unit_reads_and_has_nothing_to_commit(
    running: server.RunningServer,
) -> None:
    units = SqlUnitOfWorkFactory(running.engine)
    created = await committed_user(units)
    async with units.reading() as reader:
        found = await reader.users.get_one(created.id, View.FULL)
        assert found is not None and found.email == created.email
        with pytest.raises(RuntimeError):
            await reader.commit()


async def test_get_user_is_one_statement_that_statement_counters_see(
    running: server.RunningServer,
) -> None:
    # On PostgreSQL it bypasses SQLAlchemy's execution layer (db/raw.py), and is still
    # announced to the engine's statement listeners like every other statement.
    units = SqlUnitOfWorkFactory(running.engine)
    created = await committed_user(units)
    with recorded_statements(running.engine) as sent:
        async with units.reading() as reader:
            found = await reader.users.get_one(created.id, View.FULL)
    assert found is not None and found.id == created.id
    reads = [s for s in sent if "FROM users" in s.statement]
    assert len(reads) == 1, sent


async def test_get_users_read_needs_no_unit_on_postgresql(running: server.RunningServer) -> None:
    # read_user: on PostgreSQL one statement on a pooled connection taken for it alone,
    # past SQLAlchemy's Connection (which every unit opens: "engine_connect"); elsewhere,
    # a reading unit. Either way the user GetUser returns.
    units = SqlUnitOfWorkFactory(running.engine)
    created = await committed_user(units)
    with opened_connections(running) as connected:
        assert await units.read_user(created.id, View.FULL) == created
        basic = await units.read_user(created.id, View.BASIC)
        assert basic == replace(created, addresses=None)
        assert await units.read_user(created.id + 1_000_000, View.BASIC) is None
    assert (connected == []) == (running.engine.dialect.name == "postgresql")
    with recorded_statements(running.engine) as sent:
        # With a statement listener, a unit's Connection announces the read to it.
        assert await units.read_user(created.id, View.FULL) == created
    assert [s for s in sent if "FROM users" in s.statement], sent


async def test_a_basic_page_needs_no_unit_on_postgresql(running: server.RunningServer) -> None:
    # read_users_page: a BASIC page (ListUsers' default) is one statement, run alone on
    # PostgreSQL; a FULL page (two statements) and other backends go through a unit.
    # Either way the page is the unit's.
    units = SqlUnitOfWorkFactory(running.engine)
    created = await committed_user(units)
    pages: dict[View, list[User]] = {}
    with opened_connections(running) as connected:
        for view in (View.BASIC, View.FULL):
            query = UsersPageQuery(UserFilter(email=created.email), Ordering(), None, 2, view)
            pages[view] = list(await units.read_users_page(query))
            async with units.reading() as reader:
                assert pages[view] == list(await reader.users.list_page(query))
    assert pages[View.FULL] == [created]
    assert pages[View.BASIC] == [replace(created, addresses=None)]
    # Units: the two comparisons and the FULL page; the BASIC page too, but on PostgreSQL.
    assert len(connected) == (3 if running.engine.dialect.name == "postgresql" else 4)
