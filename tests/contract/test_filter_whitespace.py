"""Whitespace in ListUsers and StreamUsers filters, on every backend.

API.md: filters fold case and nothing else. A space or NBSP around the value is part
of it, so it matches nothing stored without one (MariaDB's PAD SPACE collations used to
drop trailing spaces); a tab is a control character, INVALID_ARGUMENT like NUL.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from users.v1 import resources_pb2
from users.v1.user_service_pb2 import ListUsersRequest, StreamUsersRequest

from tests.paging import fresh_domain, ids_of
from tests.rpc import Failure, UserStub, create_user, fails, fresh_email

Code = grpc.StatusCode
FILTERS = ["email", "email_domain", "address_email_contains"]
NBSP = "\u00a0"
# (before, after) the stored value.
PRINTABLE = [
    pytest.param("", " ", id="trailing-space"),
    pytest.param(" ", "", id="leading-space"),
    pytest.param("", "  ", id="trailing-spaces"),
    pytest.param("", NBSP, id="trailing-nbsp"),
    pytest.param(NBSP, "", id="leading-nbsp"),
]
TABS = [
    pytest.param("", "\t", id="trailing-tab"),
    pytest.param("\t", "", id="leading-tab"),
]
RPCS = ["ListUsers", "StreamUsers"]


async def matching_ids(users: UserStub, rpc: str, field: str, value: str) -> list[int]:
    if rpc == "ListUsers":
        listing = ListUsersRequest(page_size=1000)
        setattr(listing, field, value)
        page = await users.ListUsers(listing)
        assert page.next_page_token == ""
        return ids_of(page.users)
    stream = StreamUsersRequest()
    setattr(stream, field, value)
    return [user.id async for message in users.StreamUsers(stream) for user in message.users]


async def refusal(users: UserStub, rpc: str, field: str, value: str) -> Failure:
    if rpc == "ListUsers":
        listing = ListUsersRequest()
        setattr(listing, field, value)
        return await fails(users.ListUsers(listing))
    stream = StreamUsersRequest()
    setattr(stream, field, value)
    return await fails(users.StreamUsers(stream).read())


async def stored_values(users: UserStub) -> tuple[resources_pb2.User, dict[str, str]]:
    """A new user, and for each filter the value that matches exactly it."""
    address = f"a{uuid.uuid4().hex[:12]}@x.io"
    user = await create_user(users, email=fresh_email(fresh_domain()), addresses=(address,))
    return user, {
        "email": user.email,
        "email_domain": user.email.split("@")[1],
        "address_email_contains": address,
    }


@pytest.mark.parametrize("rpc", RPCS)
@pytest.mark.parametrize("field", FILTERS)
@pytest.mark.parametrize(("before", "after"), PRINTABLE)
async def test_spaces_and_nbsp_around_a_filter_match_nothing(
    users: UserStub, rpc: str, field: str, before: str, after: str
) -> None:
    user, values = await stored_values(users)
    # The bare value, in another case, finds the user: only the whitespace differs below.
    assert await matching_ids(users, rpc, field, values[field].upper()) == [user.id]
    assert await matching_ids(users, rpc, field, before + values[field] + after) == []


@pytest.mark.parametrize("rpc", RPCS)
@pytest.mark.parametrize("field", FILTERS)
@pytest.mark.parametrize(("before", "after"), TABS)
async def test_a_tab_in_a_filter_is_invalid(
    users: UserStub, rpc: str, field: str, before: str, after: str
) -> None:
    _user, values = await stored_values(users)
    failure = await refusal(users, rpc, field, before + values[field] + after)
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == [field]
    assert failure.info is not None and failure.info.reason == "INVALID_ARGUMENT"
