"""Property: paging ListUsers while rows are inserted, re-sorted and deleted between pages
never skips or repeats a row that stayed put (API.md: tokens are stable under writes).

A row "stays put" when it exists from the first page to the last with the same sort key.
A row whose sort key changes has, for the listing, left one place and arrived at another:
keyset paging (and any paging that holds no snapshot between calls) may show it at
either place, both, or neither; it is only checked to appear at most once per place.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import pytest
from google.protobuf import field_mask_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from users.v1 import resources_pb2, user_service_pb2

from tests.paging import fresh_domain, ids_of, list_all
from tests.rpc import UserStub, create_user

ORDERS = [
    f"{field}{direction}"
    for field in ("id", "create_time", "name", "email")
    for direction in ("", " desc")
]
# Few distinct names, so ties (broken by id) are common; code point order differs from
# a case-insensitive one.
NAMES = st.sampled_from(["a", "a ", "B", "b", "é", "Zed", "zed"])
LOCALS = st.sampled_from(["a", "b", "m", "z"])
OPERATIONS = st.sampled_from(["insert", "update", "delete"])
_serial = itertools.count()


@dataclass
class Listing:
    """The rows of one example and what happened to them while the listing ran."""

    domain: str
    sort_field: str
    rows: dict[int, resources_pb2.User] = field(default_factory=dict)
    moved_or_gone: set[int] = field(default_factory=set)
    moves: Counter[int] = field(default_factory=Counter)
    initial: set[int] = field(default_factory=set)

    def email(self, local: str) -> str:
        return f"{local}{next(_serial)}@{self.domain}"

    def key(self, user: resources_pb2.User) -> object:
        if self.sort_field == "create_time":
            return user.create_time.ToDatetime()
        return getattr(user, self.sort_field)


async def insert(users: UserStub, listing: Listing, name: str, local: str) -> None:
    created = await create_user(users, name=name, email=listing.email(local))
    listing.rows[created.id] = created


async def update(users: UserStub, listing: Listing, user_id: int, name: str, local: str) -> None:
    # id and create_time cannot change: for those orders the update is of another field.
    changed = resources_pb2.User(id=user_id)
    if listing.sort_field == "email":
        changed.email, path = listing.email(local), "email"
    else:
        changed.name, path = name, "name"
    updated = await users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=changed, update_mask=field_mask_pb2.FieldMask(paths=[path])
        )
    )
    if listing.key(updated) != listing.key(listing.rows[user_id]):
        listing.moved_or_gone.add(user_id)
        listing.moves[user_id] += 1
    listing.rows[user_id] = updated


async def delete(users: UserStub, listing: Listing, user_id: int) -> None:
    await users.DeleteUser(user_service_pb2.DeleteUserRequest(id=user_id, force=True))
    del listing.rows[user_id]
    listing.moved_or_gone.add(user_id)


@pytest.mark.parametrize("order_by", ORDERS)
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
async def test_rows_that_stay_put_are_listed_exactly_once(
    users: UserStub, order_by: str, data: st.DataObject
) -> None:
    listing = Listing(domain=fresh_domain(), sort_field=order_by.split(maxsplit=1)[0])
    for name, local in data.draw(st.lists(st.tuples(NAMES, LOCALS), max_size=10), "rows"):
        await insert(users, listing, name, local)
    listing.initial = set(listing.rows)
    page_size = data.draw(st.integers(1, 4), "page_size")
    request = user_service_pb2.ListUsersRequest(
        email_domain=listing.domain, order_by=order_by, page_size=page_size
    )
    seen: list[resources_pb2.User] = []
    for _ in range(100):
        page = await users.ListUsers(request)
        seen.extend(page.users)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
        for operation in data.draw(st.lists(OPERATIONS, max_size=3), "writes"):
            name, local = data.draw(NAMES), data.draw(LOCALS)
            if operation == "insert" or not listing.rows:
                await insert(users, listing, name, local)
                continue
            user_id = data.draw(st.sampled_from(sorted(listing.rows)))
            if operation == "update":
                await update(users, listing, user_id, name, local)
            else:
                await delete(users, listing, user_id)

    counts = Counter(ids_of(seen))
    stayed_put = listing.initial - listing.moved_or_gone
    assert {i: counts[i] for i in stayed_put} == dict.fromkeys(stayed_put, 1)
    assert all(n <= 1 + listing.moves[i] for i, n in counts.items()), (counts, listing.moves)
    assert all(n == 1 for i, n in counts.items() if i not in listing.moved_or_gone)
    # The rows that stayed put came in the requested order, ties broken by id.
    in_order = [u for u in seen if u.id in stayed_put]
    expected = sorted(
        in_order, key=lambda u: (listing.key(u), u.id), reverse=order_by.endswith(" desc")
    )
    assert ids_of(in_order) == ids_of(expected)
    # And a listing that runs undisturbed sees the final state exactly.
    final = await list_all(
        users,
        user_service_pb2.ListUsersRequest(
            email_domain=listing.domain, order_by=order_by, page_size=page_size
        ),
    )
    assert ids_of(final) == ids_of(
        sorted(
            listing.rows.values(),
            key=lambda u: (listing.key(u), u.id),
            reverse=order_by.endswith(" desc"),
        )
    )
