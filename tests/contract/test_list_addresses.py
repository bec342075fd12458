"""ListAddresses on every backend: order, paging, tokens bound to the user."""

from __future__ import annotations

import grpc
from users.v1 import address_service_pb2 as pb
from users.v1 import resources_pb2

from tests.paging import list_all_addresses
from tests.rpc import AddressStub, UserStub, create_user, fails

Code = grpc.StatusCode
HUNDRED = tuple(f"a{i:03d}@x.io" for i in range(100))


def request(user_id: int, page_size: int = 0, page_token: str = "") -> pb.ListAddressesRequest:
    return pb.ListAddressesRequest(user_id=user_id, page_size=page_size, page_token=page_token)


async def test_lists_by_id_with_a_default_page_of_50(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=HUNDRED)
    first = await addresses.ListAddresses(request(owner.id))
    assert list(first.addresses) == list(owner.addresses[:50]) and first.next_page_token
    # API.md: the last page has no token even when it is exactly full.
    last = await addresses.ListAddresses(request(owner.id, page_token=first.next_page_token))
    assert list(last.addresses) == list(owner.addresses[50:])
    assert last.next_page_token == ""


async def test_page_size_may_change_and_is_capped(users: UserStub, addresses: AddressStub) -> None:
    owner = await create_user(users, addresses=HUNDRED[:7])
    first = await addresses.ListAddresses(request(owner.id, page_size=3))
    rest = await addresses.ListAddresses(
        request(owner.id, page_size=5000, page_token=first.next_page_token)
    )
    assert list(first.addresses) + list(rest.addresses) == list(owner.addresses)
    assert rest.next_page_token == ""


async def test_a_user_without_addresses_has_an_empty_list(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users)
    page = await addresses.ListAddresses(request(owner.id))
    assert list(page.addresses) == [] and page.next_page_token == ""


async def test_paging_sees_later_inserts_and_skips_deletes(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=("a@x.io", "b@x.io", "c@x.io", "d@x.io"))
    first = await addresses.ListAddresses(request(owner.id, page_size=2))
    await addresses.DeleteAddress(pb.DeleteAddressRequest(id=owner.addresses[2].id))
    added = await addresses.CreateAddress(
        pb.CreateAddressRequest(user_id=owner.id, address=resources_pb2.Address(email="e@x.io"))
    )
    rest = await addresses.ListAddresses(
        request(owner.id, page_size=2, page_token=first.next_page_token)
    )
    assert list(rest.addresses) == [owner.addresses[3], added]


async def test_absent_user_is_not_found(addresses: AddressStub) -> None:
    failure = await fails(addresses.ListAddresses(request(2**62)))
    assert failure.code == Code.NOT_FOUND
    assert failure.resource is not None
    assert failure.resource.resource_type == "users.v1.User"
    assert failure.resource.resource_name == str(2**62)


async def test_bad_fields_are_reported_at_once(addresses: AddressStub) -> None:
    failure = await fails(addresses.ListAddresses(request(0, page_size=-1)))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["user_id", "page_size"]
    failure = await fails(addresses.ListAddresses(request(-4, page_token="x")))
    assert failure.fields == ["user_id"]
    failure = await fails(addresses.ListAddresses(request(1, page_size=-1, page_token="x")))
    assert failure.fields == ["page_size", "page_token"]


async def test_a_token_is_valid_only_for_its_user(users: UserStub, addresses: AddressStub) -> None:
    owner = await create_user(users, addresses=HUNDRED[:3])
    other = await create_user(users, addresses=HUNDRED[:3])
    token = (await addresses.ListAddresses(request(owner.id, page_size=1))).next_page_token
    failure = await fails(addresses.ListAddresses(request(other.id, page_token=token)))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["page_token"]
    failure = await fails(addresses.ListAddresses(request(owner.id, page_token=token + "A")))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["page_token"]


async def test_paging_one_by_one_returns_each_address_once(
    users: UserStub, addresses: AddressStub
) -> None:
    owner = await create_user(users, addresses=HUNDRED[:9])
    assert await list_all_addresses(addresses, owner.id, 1) == list(owner.addresses)
