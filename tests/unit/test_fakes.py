"""The fakes themselves: units roll back unless committed, as tests/db/test_units.py
shows the SQL units do, and a race a real database would block is refused."""

from __future__ import annotations

import pytest

from service.domain.errors import EmailTakenError
from service.domain.models import NewUser, View, utc_now
from tests.unit.fake_tables import FakeConflictError
from tests.unit.fakes import FakeDatabase, FakeUnitOfWorkFactory, WriteInReadingUnitError


def new_user(n: int) -> NewUser:
    return NewUser(name=f"User {n}", email=f"user{n}@unit.test", address_emails=("a@unit.test",))


async def test_a_writing_unit_left_without_commit_keeps_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    async with units.writing() as uow:
        created = await uow.users.create(new_user(1), utc_now())
        assert await uow.users.get_one(created.id, View.FULL) == created  # its own write
        async with units.reading() as other:
            assert await other.users.get_one(created.id, View.BASIC) is None  # not committed
    assert database.snapshot() == FakeDatabase().snapshot()


async def test_a_failed_statement_undoes_the_ones_before_it(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    async with units.writing() as uow:
        await uow.users.create(new_user(1), utc_now())
        await uow.commit()
    before = database.snapshot()
    with pytest.raises(EmailTakenError):
        async with units.writing() as uow:
            await uow.users.create(new_user(2), utc_now())
            await uow.users.create(new_user(1), utc_now())
            await uow.commit()
    assert database.snapshot() == before


async def test_commit_publishes_and_ids_are_never_reused(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    async with units.writing() as uow:
        rolled_back = await uow.users.insert(new_user(1), utc_now())
    async with units.writing() as uow:
        kept = await uow.users.insert(new_user(1), utc_now())
        await uow.commit()
    assert kept > rolled_back
    assert list(database.users.rows) == [kept]
    assert database.commits == 1


async def test_a_reading_unit_refuses_writes_and_commit(units: FakeUnitOfWorkFactory) -> None:
    async with units.reading() as uow:
        with pytest.raises(WriteInReadingUnitError):
            await uow.users.insert(new_user(1), utc_now())
        with pytest.raises(RuntimeError):
            await uow.commit()


async def test_a_port_call_outside_its_unit_is_refused(units: FakeUnitOfWorkFactory) -> None:
    uow = units.writing()
    with pytest.raises(RuntimeError):
        await uow.users.get_one(1, View.BASIC)


async def test_a_unit_sees_what_others_committed_meanwhile(units: FakeUnitOfWorkFactory) -> None:
    async with units.writing() as uow:
        async with units.writing() as other:
            created = await other.users.create(new_user(1), utc_now())
            await other.commit()
        assert await uow.users.get_one(created.id, View.BASIC) is not None
        with pytest.raises(EmailTakenError):
            await uow.users.insert(new_user(1), utc_now())


async def test_two_units_writing_one_row_is_a_conflict(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    async with units.writing() as uow:
        created = await uow.users.create(new_user(1), utc_now())
        await uow.commit()
    before = database.snapshot()
    # A real database makes the second writer wait for the first's lock: a test whose
    # hook lets both write at once describes a race that cannot happen, and is told so.
    with pytest.raises(FakeConflictError):
        async with units.writing() as uow:
            await uow.addresses.insert(created.id, "b@unit.test", utc_now())
            async with units.writing() as other:
                await other.addresses.insert(created.id, "c@unit.test", utc_now())
                await other.commit()
            await uow.commit()
    assert database.snapshot() != before  # the first commit stands, the second is refused
    assert len(database.addresses.rows) == 2


async def test_hooks_run_before_their_call_as_often_as_asked(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    seen: list[int] = []

    async def note() -> None:
        seen.append(len(database.calls))

    database.before("users.get_one", note, skip=1, times=2)
    database.before("users.delete", note)
    async with units.reading() as uow:
        for _ in range(5):
            await uow.users.get_one(1, View.BASIC)
    assert seen == [2, 3]
    assert database.unfired() == ["users.delete"]
