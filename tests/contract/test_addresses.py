"""CreateAddress, GetAddress, UpdateAddress, DeleteAddress on every backend."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import field_mask_pb2
from users.v1 import address_service_pb2 as pb
from users.v1 import resources_pb2, user_service_pb2

from tests.rpc import AddressStub, UserStub, create_user, fails

Code = grpc.StatusCode


async def get_user(users: UserStub, user_id: int) -> resources_pb2.User:
    return await users.GetUser(user_service_pb2.GetUserRequest(id=user_id))


async def add(addresses: AddressStub, user_id: int, email: str) -> resources_pb2.Address:
    return await addresses.CreateAddress(
        pb.CreateAddressRequest(user_id=user_id, address=resources_pb2.Address(email=email))
    )


def update(address: resources_pb2.Address, *paths: str) -> pb.UpdateAddressRequest:
    return pb.UpdateAddressRequest(
        address=address, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
    )


# ------------------------------------------------------------------------- CreateAddress


async def test_create_returns_the_address_lower_cased(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users)
    created = await add(addresses, owner.id, "Home@Example.ORG")
    assert created.id > 0 and created.user_id == owner.id
    assert created.email == "home@example.org"
    assert created.etag and created.etag != owner.etag
    assert created.create_time == created.update_time and created.create_time.seconds > 0
    assert await addresses.GetAddress(pb.GetAddressRequest(id=created.id)) == created


async def test_create_changes_the_users_etag_and_update_time(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=("first@x.io",))
    created = await add(addresses, owner.id, "second@x.io")
    after = await get_user(users, owner.id)
    assert after.etag != owner.etag
    assert after.update_time == created.update_time
    assert after.update_time.ToDatetime() > owner.update_time.ToDatetime()
    assert [a.email for a in after.addresses] == ["first@x.io", "second@x.io"]
    assert after.addresses[1] == created


async def test_create_ignores_output_only_fields(users: UserStub, addresses: AddressStub) -> None:
    owner, other = await create_user(users), await create_user(users)
    sent = resources_pb2.Address(id=999999, user_id=other.id, email="a@x.io", etag="x")
    sent.create_time.seconds = 5
    created = await addresses.CreateAddress(pb.CreateAddressRequest(user_id=owner.id, address=sent))
    assert created.id != 999999 and created.user_id == owner.id
    assert created.etag != "x" and created.create_time.seconds != 5


async def test_create_for_an_absent_user_is_not_found(addresses: AddressStub) -> None:
    failure = await fails(add(addresses, 2**62, "a@x.io"))
    assert failure.code == Code.NOT_FOUND
    assert failure.resource is not None
    assert failure.resource.resource_type == "users.v1.User"
    assert failure.resource.resource_name == str(2**62)
    assert failure.info is not None and failure.info.reason == "USER_NOT_FOUND"


async def test_create_reports_every_bad_field_at_once(addresses: AddressStub) -> None:
    failure = await fails(add(addresses, 0, "not-an-email"))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["user_id", "address.email"]
    failure = await fails(addresses.CreateAddress(pb.CreateAddressRequest(user_id=-3)))
    assert failure.fields == ["user_id", "address"]
    assert "positive" in failure.message


@pytest.mark.parametrize("email", ["", "a\x00@x.io", "a" * 120 + "@x.io", "a@b", "a b@x.io"])
async def test_create_with_a_bad_email_is_invalid(
    users: UserStub, addresses: AddressStub, email: str
) -> None:
    owner = await create_user(users)
    failure = await fails(add(addresses, owner.id, email))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["address.email"]
    assert await get_user(users, owner.id) == owner


async def test_duplicate_email_of_the_user_is_already_exists_and_changes_nothing(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=("home@x.io",))
    failure = await fails(add(addresses, owner.id, "HOME@x.io"))
    assert failure.code == Code.ALREADY_EXISTS
    assert failure.info is not None and failure.info.reason == "ADDRESS_EXISTS"
    assert failure.info.domain == "users.v1"
    assert failure.info.metadata["user_id"] == str(owner.id)
    assert "home@x.io" in failure.message
    assert await get_user(users, owner.id) == owner


async def test_the_same_email_may_belong_to_two_users(
    users: UserStub, addresses: AddressStub
) -> None:
    first = await create_user(users, addresses=("shared@x.io",))
    second = await create_user(users)
    assert (await add(addresses, second.id, "shared@x.io")).user_id == second.id
    assert await get_user(users, first.id) == first


async def test_the_101st_address_is_failed_precondition_and_changes_nothing(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=tuple(f"a{i}@x.io" for i in range(100)))
    failure = await fails(add(addresses, owner.id, "one-more@x.io"))
    assert failure.code == Code.FAILED_PRECONDITION
    assert failure.info is not None and failure.info.reason == "TOO_MANY_ADDRESSES"
    assert failure.precondition is not None
    assert failure.precondition.violations[0].subject == f"users/{owner.id}"
    assert "100" in failure.message
    assert await get_user(users, owner.id) == owner


async def test_concurrent_creates_never_pass_the_cap(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=tuple(f"a{i}@x.io" for i in range(97)))
    results = await asyncio.gather(
        *(add(addresses, owner.id, f"c{i}@x.io") for i in range(8)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, resources_pb2.Address)]
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 3
    assert [f.code() for f in failed] == [Code.FAILED_PRECONDITION] * 5
    assert len((await get_user(users, owner.id)).addresses) == 100


async def test_concurrent_creates_of_one_email_exactly_one_wins(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users)
    results = await asyncio.gather(
        *(add(addresses, owner.id, "race@x.io") for _ in range(6)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(results) - len(failed) == 1
    assert [f.code() for f in failed] == [Code.ALREADY_EXISTS] * 5


async def test_every_address_write_changes_the_user_etag(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users)
    etags = [owner.etag]
    created = await add(addresses, owner.id, "a@x.io")
    etags.append((await get_user(users, owner.id)).etag)
    updated = await addresses.UpdateAddress(
        update(resources_pb2.Address(id=created.id, email="b@x.io"), "email")
    )
    etags.append((await get_user(users, owner.id)).etag)
    await addresses.DeleteAddress(pb.DeleteAddressRequest(id=updated.id))
    etags.append((await get_user(users, owner.id)).etag)
    assert len(set(etags)) == 4


# ---------------------------------------------------------------------------- GetAddress


async def test_get_absent_address_is_not_found(addresses: AddressStub) -> None:
    failure = await fails(addresses.GetAddress(pb.GetAddressRequest(id=2**62)))
    assert failure.code == Code.NOT_FOUND
    assert failure.resource is not None
    assert failure.resource.resource_type == "users.v1.Address"
    assert failure.resource.resource_name == str(2**62)
    assert failure.info is not None and failure.info.reason == "ADDRESS_NOT_FOUND"


@pytest.mark.parametrize(("address_id", "word"), [(0, "required"), (-1, "positive")])
async def test_get_with_a_missing_or_negative_id_is_invalid(
    addresses: AddressStub, address_id: int, word: str
) -> None:
    failure = await fails(addresses.GetAddress(pb.GetAddressRequest(id=address_id)))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["id"]
    assert word in failure.message


# ------------------------------------------------------------------------- UpdateAddress


async def test_update_writes_the_email_and_both_etags(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=("old@x.io",))
    before = owner.addresses[0]
    updated = await addresses.UpdateAddress(
        update(resources_pb2.Address(id=before.id, email="New@X.io"), "email")
    )
    assert updated.email == "new@x.io" and updated.id == before.id
    assert updated.etag != before.etag
    assert updated.create_time == before.create_time
    assert updated.update_time.ToDatetime() > before.update_time.ToDatetime()
    user = await get_user(users, owner.id)
    assert user.etag != owner.etag and user.update_time == updated.update_time
    assert list(user.addresses) == [updated]


@pytest.mark.parametrize("paths", [(), ("*",), ("email", "id", "user_id", "etag")])
async def test_empty_star_and_output_only_paths(
    users: UserStub, addresses: AddressStub, paths: tuple[str, ...]
) -> None:
    owner = await create_user(users, addresses=("old@x.io",))
    address = resources_pb2.Address(id=owner.addresses[0].id, email="new@x.io", user_id=12345)
    address.create_time.seconds = 7
    updated = await addresses.UpdateAddress(update(address, *paths))
    assert updated.email == "new@x.io" and updated.user_id == owner.id
    assert updated.create_time == owner.addresses[0].create_time


async def test_empty_mask_without_an_email_changes_nothing(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=("old@x.io",))
    same = await addresses.UpdateAddress(update(resources_pb2.Address(id=owner.addresses[0].id)))
    assert same == owner.addresses[0]
    assert await get_user(users, owner.id) == owner


async def test_update_reports_every_bad_field_at_once(addresses: AddressStub) -> None:
    failure = await fails(
        addresses.UpdateAddress(update(resources_pb2.Address(email="bad"), "email", "street"))
    )
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["address.id", "update_mask", "address.email"]


async def test_star_needs_an_email(users: UserStub, addresses: AddressStub) -> None:
    owner = await create_user(users, addresses=("old@x.io",))
    failure = await fails(
        addresses.UpdateAddress(update(resources_pb2.Address(id=owner.addresses[0].id), "*"))
    )
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["address.email"]
    assert await get_user(users, owner.id) == owner


async def test_update_with_a_stale_etag_is_aborted_and_changes_nothing(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=("old@x.io",))
    first = owner.addresses[0]
    current = await addresses.UpdateAddress(
        update(resources_pb2.Address(id=first.id, email="mid@x.io", etag=first.etag))
    )
    user = await get_user(users, owner.id)
    failure = await fails(
        addresses.UpdateAddress(
            update(resources_pb2.Address(id=first.id, email="late@x.io", etag=first.etag))
        )
    )
    assert failure.code == Code.ABORTED
    assert failure.info is not None and failure.info.reason == "ETAG_MISMATCH"
    assert await addresses.GetAddress(pb.GetAddressRequest(id=first.id)) == current
    assert await get_user(users, owner.id) == user


async def test_update_to_another_address_of_the_user_is_already_exists(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=("one@x.io", "two@x.io"))
    failure = await fails(
        addresses.UpdateAddress(
            update(resources_pb2.Address(id=owner.addresses[1].id, email="ONE@x.io"), "email")
        )
    )
    assert failure.code == Code.ALREADY_EXISTS
    assert failure.info is not None and failure.info.reason == "ADDRESS_EXISTS"
    assert await get_user(users, owner.id) == owner


async def test_update_to_its_own_email_in_other_case_is_fine(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=("one@x.io",))
    same = await addresses.UpdateAddress(
        update(resources_pb2.Address(id=owner.addresses[0].id, email="ONE@X.IO"), "email")
    )
    assert same.email == "one@x.io"


async def test_update_absent_address_is_not_found(addresses: AddressStub) -> None:
    failure = await fails(
        addresses.UpdateAddress(update(resources_pb2.Address(id=2**62, email="a@x.io")))
    )
    assert failure.code == Code.NOT_FOUND
    assert failure.resource is not None and failure.resource.resource_type == "users.v1.Address"


# ------------------------------------------------------------------------- DeleteAddress


async def test_delete_removes_it_and_touches_the_user(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=("one@x.io", "two@x.io"))
    await addresses.DeleteAddress(
        pb.DeleteAddressRequest(id=owner.addresses[0].id, etag=owner.addresses[0].etag)
    )
    failure = await fails(addresses.GetAddress(pb.GetAddressRequest(id=owner.addresses[0].id)))
    assert failure.code == Code.NOT_FOUND
    user = await get_user(users, owner.id)
    assert list(user.addresses) == [owner.addresses[1]]
    assert user.etag != owner.etag
    assert user.update_time.ToDatetime() > owner.update_time.ToDatetime()


async def test_delete_with_a_stale_etag_is_aborted_and_changes_nothing(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=("one@x.io",))
    failure = await fails(
        addresses.DeleteAddress(pb.DeleteAddressRequest(id=owner.addresses[0].id, etag="stale"))
    )
    assert failure.code == Code.ABORTED
    assert failure.info is not None and failure.info.reason == "ETAG_MISMATCH"
    assert await get_user(users, owner.id) == owner


async def test_delete_absent_or_deleted_address_is_not_found(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=("one@x.io",))
    await addresses.DeleteAddress(pb.DeleteAddressRequest(id=owner.addresses[0].id))
    failure = await fails(
        addresses.DeleteAddress(pb.DeleteAddressRequest(id=owner.addresses[0].id))
    )
    assert failure.code == Code.NOT_FOUND
    assert failure.resource is not None
    assert failure.resource.resource_name == str(owner.addresses[0].id)


@pytest.mark.parametrize("address_id", [0, -7])
async def test_delete_with_a_missing_or_negative_id_is_invalid(
    addresses: AddressStub, address_id: int
) -> None:
    failure = await fails(addresses.DeleteAddress(pb.DeleteAddressRequest(id=address_id)))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["id"]


async def test_addresses_of_a_deleted_user_are_gone(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=("one@x.io",))
    await users.DeleteUser(user_service_pb2.DeleteUserRequest(id=owner.id, force=True))
    failure = await fails(addresses.GetAddress(pb.GetAddressRequest(id=owner.addresses[0].id)))
    assert failure.code == Code.NOT_FOUND
    failure = await fails(add(addresses, owner.id, "late@x.io"))
    assert failure.code == Code.NOT_FOUND
    assert failure.resource is not None and failure.resource.resource_type == "users.v1.User"
