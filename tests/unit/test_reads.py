"""The reading use cases on the in-memory ports: GetUser, BatchGetUsers, ListUsers,
ListAddresses and StreamUsers each open a reading unit and page as API.md says."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.domain import addresses, bulk, listing, streaming, users
from service.domain.bulk import RowInput
from service.domain.errors import InvalidArgumentError, UserNotFoundError
from service.domain.models import User, View
from service.domain.queries import ListUsersInput
from service.domain.users import UserInput
from tests.unit.fakes import FakeDatabase, FakePageTokens, FakeUnitOfWorkFactory
from tests.unit.inputs import person


async def seeded(units: FakeUnitOfWorkFactory, count: int) -> list[User]:
    """Users named in the reverse order of their ids, every third with an address."""
    batch = [
        RowInput(
            UserInput(
                f"Name {count - n:03}",
                f"u{n}@{'even' if n % 2 == 0 else 'odd'}.test",
                (f"home-{n}@unit.test",) if n % 3 == 0 else (),
            )
        )
        for n in range(count)
    ]
    return await bulk.batch_create_users(units, batch)


async def every_page(
    units: FakeUnitOfWorkFactory, tokens: FakePageTokens, request: ListUsersInput
) -> list[list[int]]:
    pages: list[list[int]] = []
    token = ""
    while True:
        page = await listing.list_users(units, tokens, _with_token(request, token))
        pages.append([user.id for user in page.items])
        if not page.next_page_token:
            return pages
        token = page.next_page_token


def _with_token(request: ListUsersInput, token: str) -> ListUsersInput:
    return ListUsersInput(
        request.page_size,
        token,
        request.email_domain,
        request.address_email_contains,
        request.email,
        request.order_by,
        request.view,
    )


async def test_get_and_batch_get_read_without_writing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    created = await users.create_user(units, person(1, "a@unit.test"))
    other = await users.create_user(units, person(2))
    before = database.commits
    basic = await users.get_user(units, created.id, View.BASIC)
    assert basic.addresses is None and basic.etag == created.etag
    found = await users.batch_get_users(units, [other.id, created.id, other.id], View.FULL)
    assert [u.id for u in found] == [other.id, created.id, other.id]
    assert found[1] == created
    with pytest.raises(UserNotFoundError) as raised:
        await users.batch_get_users(units, [created.id, 404, 405], View.BASIC)
    assert raised.value.resource_id == 404
    assert database.commits == before


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        ("", lambda us: sorted(us, key=lambda u: u.id)),
        ("id desc", lambda us: sorted(us, key=lambda u: -u.id)),
        ("name", lambda us: sorted(us, key=lambda u: (u.name, u.id))),
        ("email desc", lambda us: sorted(us, key=lambda u: u.email, reverse=True)),
    ],
)
async def test_list_users_pages_through_every_user_once_in_order(
    units: FakeUnitOfWorkFactory,
    order_by: str,
    expected: Callable[[list[User]], list[User]],
) -> None:
    created = await seeded(units, 23)
    pages = await every_page(units, FakePageTokens(), ListUsersInput(5, order_by=order_by))
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [i for page in pages for i in page] == [u.id for u in expected(created)]


async def test_list_users_filters_combine(units: FakeUnitOfWorkFactory) -> None:
    created = await seeded(units, 12)
    request = ListUsersInput(100, email_domain="EVEN.test", address_email_contains="HOME-")
    pages = await every_page(units, FakePageTokens(), request)
    assert pages == [[u.id for n, u in enumerate(created) if n % 6 == 0]]
    page = await listing.list_users(units, FakePageTokens(), ListUsersInput(email="U5@odd.TEST"))
    assert [u.id for u in page.items] == [created[5].id]


async def test_a_token_of_other_filters_is_invalid_argument(
    units: FakeUnitOfWorkFactory,
) -> None:
    await seeded(units, 4)
    tokens = FakePageTokens()
    page = await listing.list_users(units, tokens, ListUsersInput(2, order_by="name"))
    with pytest.raises(InvalidArgumentError) as raised:
        await listing.list_users(units, tokens, ListUsersInput(2, page.next_page_token))
    assert [v.field for v in raised.value.violations] == ["page_token"]


async def test_list_addresses_pages_by_id(units: FakeUnitOfWorkFactory) -> None:
    user = await users.create_user(units, person(1, *[f"a{n}@unit.test" for n in range(5)]))
    tokens = FakePageTokens()
    first = await addresses.list_addresses(units, tokens, user.id, 3, "")
    second = await addresses.list_addresses(units, tokens, user.id, 3, first.next_page_token)
    assert user.addresses is not None
    assert [*first.items, *second.items] == list(user.addresses)
    assert second.next_page_token == ""
    with pytest.raises(UserNotFoundError):
        await addresses.list_addresses(units, tokens, 404, 3, "")


async def test_stream_users_sends_full_batches_after_a_position(
    units: FakeUnitOfWorkFactory,
) -> None:
    created = await seeded(units, 12)
    request = streaming.StreamInput(view=View.FULL, after_id=created[1].id, batch_size=4)
    batches = [batch async for batch in streaming.stream_users(units, request)]
    assert [len(batch.users) for batch in batches] == [4, 4, 2]
    assert [row[0] for batch in batches for row in batch.users] == [u.id for u in created[2:]]
    owned = {uid: rows for batch in batches for uid, rows in (batch.addresses or {}).items()}
    assert sorted(owned) == [u.id for n, u in enumerate(created) if n % 3 == 0 and n >= 2]
