"""CreateUser and its request_id (API.md), on the in-memory ports: the two-pass retry and
its races are set up by hooks between two port calls, not left to the scheduler."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from service.domain import users
from service.domain.errors import (
    DatabaseUnavailableError,
    EmailTakenError,
    InvalidArgumentError,
    RequestIdReusedError,
    UserNotFoundError,
)
from service.domain.models import View, utc_now
from service.domain.users import REQUEST_ID_TTL, UserInput
from tests.unit.fakes import FakeDatabase, FakeUnitOfWorkFactory
from tests.unit.inputs import person


async def test_creates_the_user_with_its_addresses_in_one_commit(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    body = UserInput("Ana", "Ana@Example.COM", ("Home@Example.com", "work@example.com"))
    created = await users.create_user(units, body)
    assert (created.name, created.email, created.version) == ("Ana", "ana@example.com", 1)
    assert created.addresses is not None
    assert [a.email for a in created.addresses] == ["home@example.com", "work@example.com"]
    assert created == await users.get_user(units, created.id, View.FULL)
    assert database.commits == 1
    assert database.requests.rows == {}


async def test_a_taken_email_is_email_taken_and_writes_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    await users.create_user(units, person(1))
    before = database.snapshot()
    with pytest.raises(EmailTakenError) as raised:
        await users.create_user(units, replace(person(1), name="Other"), "req-1")
    assert raised.value.field == "user.email"
    assert database.snapshot() == before  # the request_id claim was rolled back too


async def test_first_call_with_a_request_id_creates_and_remembers_it(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    created = await users.create_user(units, person(1), "req-1")
    record = database.requests.rows[("CreateUser", "req-1")]
    assert record.resource_id == created.id
    assert list(database.users.rows) == [created.id]


async def test_same_request_id_same_body_returns_the_current_state(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    created = await users.create_user(units, person(1), "req-1")
    renamed = await users.update_user(units, created.id, UserInput("Renamed", ""), "", ["name"])
    before = database.snapshot()
    replayed = await users.create_user(units, person(1), "req-1")
    assert replayed == renamed
    assert replayed.name == "Renamed"
    assert database.snapshot() == before


async def test_same_request_id_with_another_body_is_request_id_reused(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    await users.create_user(units, person(1), "req-1")
    before = database.snapshot()
    with pytest.raises(RequestIdReusedError) as raised:
        await users.create_user(units, person(2), "req-1")
    assert [v.field for v in raised.value.violations] == ["request_id"]
    assert database.snapshot() == before


async def test_a_request_id_is_per_method(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    async with units.writing() as uow:
        await uow.requests.claim("BatchCreateUsers", "req-1", "other", utc_now(), utc_now())
        await uow.commit()
    created = await users.create_user(units, person(1), "req-1")
    assert database.requests.rows[("CreateUser", "req-1")].resource_id == created.id


async def test_a_replay_of_a_deleted_user_is_not_found(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    created = await users.create_user(units, person(1), "req-1")
    await users.delete_user(units, created.id, "", force=False)
    before = database.snapshot()
    with pytest.raises(UserNotFoundError) as raised:
        await users.create_user(units, person(1), "req-1")
    assert raised.value.resource_id == created.id
    assert database.snapshot() == before


async def test_a_claim_lost_between_find_and_claim_replays_the_winner(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    winner = []

    async def concurrent_retry() -> None:
        winner.append(await users.create_user(units, person(1), "req-1"))

    # Our call finds no record; before its claim, the same request commits in another call.
    database.before("requests.claim", concurrent_retry)
    replayed = await users.create_user(units, person(1), "req-1")
    assert database.unfired() == []
    assert replayed == winner[0]
    assert list(database.users.rows) == [winner[0].id]
    # Ours: find, claim (lost); the winner's whole call; then our second pass: find, read.
    ours = [call for call in database.calls if call.startswith("requests.")]
    assert ours[:2] == ["requests.find", "requests.claim"]
    assert database.calls[-2:] == ["requests.find", "users.get_many"]


async def test_a_claim_lost_to_another_body_is_request_id_reused(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    winner = []

    async def concurrent_other_body() -> None:
        winner.append(await users.create_user(units, person(2), "req-1"))

    database.before("requests.claim", concurrent_other_body)
    with pytest.raises(RequestIdReusedError):
        await users.create_user(units, person(1), "req-1")
    assert database.unfired() == []
    assert [u.email for u in database.users.rows.values()] == [winner[0].email]


async def test_an_email_taken_between_claim_and_insert_keeps_no_claim(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    async def concurrent_same_email() -> None:
        await users.create_user(units, replace(person(1), name="First"))

    database.before("users.create", concurrent_same_email)
    with pytest.raises(EmailTakenError):
        await users.create_user(units, person(1), "req-1")
    assert database.requests.rows == {}
    assert [u.name for u in database.users.rows.values()] == ["First"]


async def test_a_failed_write_keeps_nothing_and_the_retry_creates(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    database.fail("requests.attach", DatabaseUnavailableError())
    with pytest.raises(DatabaseUnavailableError):
        await users.create_user(units, person(1), "req-1")
    assert database.snapshot() == FakeDatabase().snapshot()
    created = await users.create_user(units, person(1), "req-1")
    assert database.requests.rows[("CreateUser", "req-1")].resource_id == created.id


async def test_an_expired_request_id_is_forgotten_and_used_again(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    long_ago = utc_now() - REQUEST_ID_TTL - timedelta(minutes=1)
    async with units.writing() as uow:
        await uow.requests.claim("CreateUser", "req-1", "old body", long_ago, long_ago)
        await uow.commit()
    created = await users.create_user(units, person(1), "req-1")
    record = database.requests.rows[("CreateUser", "req-1")]
    assert record.resource_id == created.id
    assert record.create_time > long_ago


async def test_an_invalid_body_reads_and_writes_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        await users.create_user(units, UserInput("", "not-an-email", ("a@x.io", "A@x.io")), " x")
    fields = [v.field for v in raised.value.violations]
    assert fields == ["user.name", "user.email", "user.addresses[1]", "request_id"]
    assert database.calls == []
