"""Etag rules of API.md on the in-memory ports: a stale etag writes nothing, a current one
writes and changes it, and every address write changes its user's etag too."""

from __future__ import annotations

import pytest

from service.domain import addresses, users
from service.domain.errors import (
    AddressExistsError,
    AddressNotFoundError,
    DatabaseUnavailableError,
    EmailTakenError,
    StaleEtagError,
    TooManyAddressesError,
    UserHasAddressesError,
    UserNotFoundError,
)
from service.domain.models import User, View
from service.domain.users import UserInput
from tests.unit.fakes import FakeDatabase, FakeUnitOfWorkFactory
from tests.unit.inputs import person


async def current(units: FakeUnitOfWorkFactory, user_id: int) -> User:
    return await users.get_user(units, user_id, View.FULL)


async def test_update_with_a_stale_etag_is_aborted_and_writes_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    created = await users.create_user(units, person(1))
    await users.update_user(units, created.id, UserInput("Second", ""), "", ["name"])
    before = database.snapshot()
    with pytest.raises(StaleEtagError) as raised:
        await users.update_user(units, created.id, UserInput("Third", ""), created.etag, ["name"])
    assert raised.value.resource_id == created.id
    assert database.snapshot() == before


async def test_update_with_the_current_etag_writes_and_changes_it(
    units: FakeUnitOfWorkFactory,
) -> None:
    created = await users.create_user(units, person(1))
    changed = UserInput("Renamed", "New@Unit.test")
    updated = await users.update_user(units, created.id, changed, created.etag, [])
    assert (updated.name, updated.email) == ("Renamed", "new@unit.test")
    assert updated.etag != created.etag
    assert updated.version == created.version + 1
    assert updated == await current(units, created.id)


async def test_update_to_a_taken_email_is_email_taken_and_writes_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    created = await users.create_user(units, person(1))
    await users.create_user(units, person(2))
    before = database.snapshot()
    with pytest.raises(EmailTakenError):
        await users.update_user(units, created.id, person(2), created.etag, ["email"])
    assert database.snapshot() == before


async def test_update_naming_only_output_fields_changes_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    created = await users.create_user(units, person(1))
    before = database.snapshot()
    same = await users.update_user(units, created.id, person(9), created.etag, ["etag", "id"])
    assert same == created
    assert database.snapshot() == before


async def test_update_of_an_absent_user_is_not_found(units: FakeUnitOfWorkFactory) -> None:
    with pytest.raises(UserNotFoundError):
        await users.update_user(units, 404, UserInput("Name", ""), "", ["name"])


async def test_delete_with_a_stale_etag_is_aborted_and_deletes_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    created = await users.create_user(units, person(1))
    await addresses.create_address(units, created.id, "a@unit.test")
    before = database.snapshot()
    with pytest.raises(StaleEtagError):
        await users.delete_user(units, created.id, created.etag, force=True)
    assert database.snapshot() == before


async def test_delete_of_a_user_with_addresses_needs_force(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    created = await users.create_user(units, person(1, "a@unit.test", "b@unit.test"))
    before = database.snapshot()
    with pytest.raises(UserHasAddressesError) as raised:
        await users.delete_user(units, created.id, created.etag, force=False)
    assert (raised.value.user_id, raised.value.count) == (created.id, 2)
    assert "2 addresses" in raised.value.message and "force" in raised.value.message
    assert database.snapshot() == before
    await users.delete_user(units, created.id, created.etag, force=True)
    assert database.users.rows == {}
    assert database.addresses.rows == {}


async def test_delete_with_the_current_etag_deletes(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    created = await users.create_user(units, person(1))
    kept = await users.create_user(units, person(2))
    await users.delete_user(units, created.id, created.etag, force=False)
    assert list(database.users.rows) == [kept.id]
    with pytest.raises(UserNotFoundError):
        await users.delete_user(units, created.id, "", force=False)


async def test_creating_an_address_changes_the_users_etag(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    user = await users.create_user(units, person(1))
    address = await addresses.create_address(units, user.id, "Home@Unit.test")
    assert (address.user_id, address.email, address.version) == (user.id, "home@unit.test", 1)
    after = await current(units, user.id)
    assert after.etag != user.etag
    assert after.update_time == address.create_time
    assert after.addresses == (address,)
    # The user's etag from before the address is stale now.
    before = database.snapshot()
    with pytest.raises(StaleEtagError):
        await users.update_user(units, user.id, UserInput("Late", ""), user.etag, ["name"])
    assert database.snapshot() == before


async def test_an_address_the_user_has_is_address_exists_and_writes_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    user = await users.create_user(units, person(1, "home@unit.test"))
    before = database.snapshot()
    with pytest.raises(AddressExistsError) as raised:
        await addresses.create_address(units, user.id, "HOME@unit.test")
    assert raised.value.metadata == {"field": "address.email", "user_id": str(user.id)}
    assert database.snapshot() == before


async def test_the_101st_address_is_too_many_addresses(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    emails = [f"a{n}@unit.test" for n in range(100)]
    user = await users.create_user(units, person(1, *emails))
    before = database.snapshot()
    with pytest.raises(TooManyAddressesError) as raised:
        await addresses.create_address(units, user.id, "one-more@unit.test")
    assert raised.value.user_id == user.id
    assert database.snapshot() == before
    assert len(database.addresses.rows) == 100


async def test_the_100th_address_is_allowed(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    user = await users.create_user(units, person(1, *[f"a{n}@unit.test" for n in range(99)]))
    await addresses.create_address(units, user.id, "last@unit.test")
    assert len(database.addresses.rows) == 100


async def test_an_address_for_an_absent_user_is_user_not_found(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    with pytest.raises(UserNotFoundError):
        await addresses.create_address(units, 404, "a@unit.test")
    assert database.addresses.rows == {}


async def test_update_address_with_a_stale_etag_writes_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    user = await users.create_user(units, person(1))
    address = await addresses.create_address(units, user.id, "a@unit.test")
    await addresses.update_address(units, address.id, "b@unit.test", "", [])
    before = database.snapshot()
    with pytest.raises(StaleEtagError) as raised:
        await addresses.update_address(units, address.id, "c@unit.test", address.etag, [])
    assert raised.value.resource_id == address.id
    assert database.snapshot() == before


async def test_update_address_with_the_current_etag_changes_both_etags(
    units: FakeUnitOfWorkFactory,
) -> None:
    user = await users.create_user(units, person(1))
    address = await addresses.create_address(units, user.id, "a@unit.test")
    user = await current(units, user.id)
    updated = await addresses.update_address(units, address.id, "B@unit.test", address.etag, [])
    assert (updated.email, updated.version) == ("b@unit.test", 2)
    assert updated.etag != address.etag
    after = await current(units, user.id)
    assert after.etag != user.etag
    assert after.addresses == (updated,)


async def test_update_address_to_another_of_its_users_emails_is_address_exists(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    user = await users.create_user(units, person(1, "a@unit.test", "b@unit.test"))
    assert user.addresses is not None
    first = user.addresses[0]
    before = database.snapshot()
    with pytest.raises(AddressExistsError):
        await addresses.update_address(units, first.id, "b@unit.test", first.etag, ["email"])
    assert database.snapshot() == before


async def test_update_address_without_a_change_writes_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    user = await users.create_user(units, person(1, "a@unit.test"))
    assert user.addresses is not None
    before = database.snapshot()
    same = await addresses.update_address(units, user.addresses[0].id, "", "", ["user_id"])
    assert same == user.addresses[0]
    assert database.snapshot() == before


async def test_delete_address_with_a_stale_etag_writes_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    user = await users.create_user(units, person(1))
    address = await addresses.create_address(units, user.id, "a@unit.test")
    await addresses.update_address(units, address.id, "b@unit.test", "", [])
    before = database.snapshot()
    with pytest.raises(StaleEtagError):
        await addresses.delete_address(units, address.id, address.etag)
    assert database.snapshot() == before


async def test_delete_address_with_the_current_etag_changes_the_users_etag(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    user = await users.create_user(units, person(1))
    address = await addresses.create_address(units, user.id, "a@unit.test")
    user = await current(units, user.id)
    await addresses.delete_address(units, address.id, address.etag)
    after = await current(units, user.id)
    assert after.addresses == ()
    assert after.etag != user.etag
    with pytest.raises(AddressNotFoundError):
        await addresses.delete_address(units, address.id, "")


async def test_an_address_write_that_fails_after_its_insert_keeps_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    user = await users.create_user(units, person(1))
    before = database.snapshot()
    # The address and the user's new version are written; reading the address back fails.
    database.fail("addresses.get", DatabaseUnavailableError())
    with pytest.raises(DatabaseUnavailableError):
        await addresses.create_address(units, user.id, "a@unit.test")
    assert database.unfired() == []
    assert database.snapshot() == before
    assert (await current(units, user.id)).etag == user.etag


async def test_an_address_deleted_with_its_user_is_not_found(
    units: FakeUnitOfWorkFactory,
) -> None:
    user = await users.create_user(units, person(1, "a@unit.test"))
    assert user.addresses is not None
    await users.delete_user(units, user.id, "", force=True)
    with pytest.raises(AddressNotFoundError):
        await addresses.update_address(units, user.addresses[0].id, "b@unit.test", "", [])
