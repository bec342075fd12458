"""BatchCreateUsers on the in-memory ports: all or nothing, and request_id replays."""

from __future__ import annotations

from dataclasses import replace

import pytest

from service.domain import bulk, users
from service.domain.bulk import RowInput
from service.domain.errors import (
    DatabaseUnavailableError,
    EmailTakenError,
    InvalidArgumentError,
    RequestIdReusedError,
    UserNotFoundError,
)
from service.domain.models import User
from service.domain.users import UserInput
from tests.unit.fakes import FakeDatabase, FakeUnitOfWorkFactory
from tests.unit.inputs import person, rows


async def test_creates_every_row_in_request_order(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    batch = [RowInput(person(3, "x@unit.test")), RowInput(person(1)), RowInput(person(2))]
    created = await bulk.batch_create_users(units, batch)
    assert [u.email for u in created] == ["user3@unit.test", "user1@unit.test", "user2@unit.test"]
    assert [len(u.addresses or ()) for u in created] == [1, 0, 0]
    assert sorted(database.users.rows) == sorted(u.id for u in created)
    assert database.commits == 1


async def test_an_email_stored_already_fails_the_whole_batch(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    await users.create_user(units, person(2))
    before = database.snapshot()
    with pytest.raises(EmailTakenError) as raised:
        await bulk.batch_create_users(units, rows(0, 4))
    assert raised.value.field == "requests[2].user.email"
    assert database.snapshot() == before


async def test_an_email_repeated_in_the_batch_names_the_later_row(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    batch = [*rows(0, 3), RowInput(replace(person(1), name="Again"))]
    with pytest.raises(EmailTakenError) as raised:
        await bulk.batch_create_users(units, batch)
    assert raised.value.field == "requests[3].user.email"
    assert "requests[1]" in raised.value.message
    assert database.calls == []


async def test_an_invalid_row_is_invalid_argument_with_its_path(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    batch = [*rows(0, 2), RowInput(UserInput("", "user9@unit.test")), RowInput(None)]
    with pytest.raises(InvalidArgumentError) as raised:
        await bulk.batch_create_users(units, batch)
    fields = [v.field for v in raised.value.violations]
    assert fields == ["requests[2].user.name", "requests[3].user"]
    assert database.calls == []


async def test_a_request_id_twice_in_one_batch_is_invalid_argument(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    batch = [RowInput(person(0), "same"), RowInput(person(1)), RowInput(person(2), "same")]
    with pytest.raises(InvalidArgumentError) as raised:
        await bulk.batch_create_users(units, batch)
    assert [v.field for v in raised.value.violations] == ["requests[2].request_id"]
    assert database.calls == []


async def test_a_failing_write_keeps_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    database.fail("requests.remember_many", DatabaseUnavailableError())
    with pytest.raises(DatabaseUnavailableError):
        await bulk.batch_create_users(units, rows(0, 3, request_ids=True))
    assert database.unfired() == []
    assert database.snapshot() == FakeDatabase().snapshot()


async def test_a_retried_batch_returns_the_same_users_and_creates_none(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    batch = rows(0, 3, request_ids=True)
    created = await bulk.batch_create_users(units, batch)
    before = database.snapshot()
    assert await bulk.batch_create_users(units, batch) == created
    assert database.snapshot() == before


async def test_known_rows_replay_and_new_rows_are_created_in_order(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    first = await bulk.batch_create_users(units, rows(0, 2, request_ids=True))
    renamed = await users.update_user(units, first[1].id, UserInput("Renamed", ""), "", ["name"])
    mixed = [rows(5, 6)[0], rows(1, 2, request_ids=True)[0], rows(6, 7, request_ids=True)[0]]
    result = await bulk.batch_create_users(units, mixed)
    assert result[1] == renamed  # API.md: a replay returns the current state
    assert [u.email for u in result] == ["user5@unit.test", "user1@unit.test", "user6@unit.test"]
    assert len(database.users.rows) == 4
    remembered = database.requests.rows[("BatchCreateUsers", "row-6")]
    assert remembered.resource_id == result[2].id


async def test_a_request_id_with_another_body_is_request_id_reused(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    await bulk.batch_create_users(units, rows(0, 2, request_ids=True))
    before = database.snapshot()
    reused = [*rows(7, 8), RowInput(person(8), "row-1")]
    with pytest.raises(RequestIdReusedError) as raised:
        await bulk.batch_create_users(units, reused)
    assert [v.field for v in raised.value.violations] == ["requests[1].request_id"]
    assert database.snapshot() == before


async def test_a_replay_of_a_deleted_user_is_not_found(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    created = await bulk.batch_create_users(units, rows(0, 2, request_ids=True))
    await users.delete_user(units, created[0].id, "", force=False)
    before = database.snapshot()
    with pytest.raises(UserNotFoundError) as raised:
        await bulk.batch_create_users(units, rows(0, 2, request_ids=True))
    assert raised.value.resource_id == created[0].id
    assert database.snapshot() == before


async def test_a_concurrent_retry_that_inserts_first_is_replayed(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    batch = rows(0, 3, request_ids=True)
    winner: list[list[User]] = []

    async def concurrent_retry() -> None:
        winner.append(await bulk.batch_create_users(units, batch))

    # Ours found no record; the same batch commits before our insert, which then finds
    # the emails taken: the second pass replays the winner's users.
    database.before("bulk.insert_many", concurrent_retry)
    assert await bulk.batch_create_users(units, batch) == winner[0]
    assert database.unfired() == []
    assert len(database.users.rows) == 3


async def test_a_request_id_recorded_meanwhile_with_another_body_is_reused(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    async def concurrent_other_body() -> None:
        await bulk.batch_create_users(units, [RowInput(person(9), "row-1")])

    # Our users are inserted; before their request_ids are recorded, another call
    # records row-1 with another body: our second pass reports the reuse.
    database.before("requests.remember_many", concurrent_other_body)
    with pytest.raises(RequestIdReusedError) as raised:
        await bulk.batch_create_users(units, rows(0, 3, request_ids=True))
    assert database.unfired() == []
    assert [v.field for v in raised.value.violations] == ["requests[1].request_id"]
    assert [u.email for u in database.users.rows.values()] == ["user9@unit.test"]


async def test_an_email_taken_on_both_passes_is_email_taken(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    await users.create_user(units, person(1))
    before = database.snapshot()
    with pytest.raises(EmailTakenError) as raised:
        await bulk.batch_create_users(units, rows(0, 3, request_ids=True))
    assert raised.value.field == "requests[1].user.email"
    assert database.calls.count("bulk.insert_many") == 2  # one retry, then the error
    assert database.snapshot() == before
