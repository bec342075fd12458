"""ListUsers on every backend: page sizes, filters, order_by, views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from users.v1 import resources_pb2
from users.v1.user_service_pb2 import ListUsersRequest

from service.server import RunningServer
from tests.paging import fresh_domain, ids_of, list_all, request_with_token, seed_users
from tests.rpc import UserStub, create_user, fails, fresh_email

Code = grpc.StatusCode
BASIC = resources_pb2.USER_VIEW_BASIC
FULL = resources_pb2.USER_VIEW_FULL

# Code point order, as every backend compares names: upper before lower case, a trailing
# space after its absence, accents and emoji after ASCII. Repeats test the id tie-break.
NAMES = ["zoe", "Zoë", "Ana", "ana", "ana ", "Émile", "😀 Smile", "Ana", "b", "ana", "Bo"]
BASE = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
# Ties and one-microsecond steps: a token must carry create_time exactly.
TIMES = [
    BASE,
    BASE,
    BASE + timedelta(microseconds=1),
    BASE - timedelta(microseconds=1),
    BASE,
    BASE + timedelta(seconds=5),
    BASE - timedelta(days=400),
    BASE + timedelta(microseconds=1),
    BASE,
    BASE + timedelta(microseconds=2),
    BASE - timedelta(microseconds=1),
]
ORDERS = ["id", "create_time", "name", "email"]


async def test_lists_a_domain_by_id_in_basic_view_by_default(users: UserStub) -> None:
    domain = fresh_domain()
    created = [
        await create_user(users, email=fresh_email(domain), addresses=("a@x.io",)) for _ in range(3)
    ]
    page = await users.ListUsers(ListUsersRequest(email_domain=domain))
    assert ids_of(page.users) == sorted(u.id for u in created)
    assert page.next_page_token == ""
    assert all(len(u.addresses) == 0 for u in page.users)
    assert page.users[0] == resources_pb2.User(
        id=created[0].id,
        name=created[0].name,
        email=created[0].email,
        create_time=created[0].create_time,
        update_time=created[0].update_time,
        etag=created[0].etag,
    )


async def test_full_view_carries_addresses_by_id(users: UserStub) -> None:
    domain = fresh_domain()
    created = await create_user(
        users, email=fresh_email(domain), addresses=("b@x.io", "a@x.io", "c@x.io")
    )
    page = await users.ListUsers(ListUsersRequest(email_domain=domain, view=FULL))
    assert list(page.users) == [created]
    assert [a.email for a in page.users[0].addresses] == ["b@x.io", "a@x.io", "c@x.io"]


async def test_no_filter_lists_everyone(users: UserStub) -> None:
    created = await create_user(users)
    page = await users.ListUsers(ListUsersRequest(order_by="id desc", page_size=1))
    assert ids_of(page.users) == [created.id]
    assert page.next_page_token


async def test_page_size_zero_means_50(users: UserStub, running: RunningServer) -> None:
    domain = fresh_domain()
    ids = await seed_users(running.engine, domain, 51)
    first = await users.ListUsers(ListUsersRequest(email_domain=domain))
    assert ids_of(first.users) == ids[:50] and first.next_page_token
    second = await users.ListUsers(
        ListUsersRequest(email_domain=domain, page_token=first.next_page_token)
    )
    assert ids_of(second.users) == ids[50:] and second.next_page_token == ""


async def test_exactly_full_last_page_has_no_token(users: UserStub, running: RunningServer) -> None:
    domain = fresh_domain()
    ids = await seed_users(running.engine, domain, 4)
    whole = await users.ListUsers(ListUsersRequest(email_domain=domain, page_size=4))
    assert ids_of(whole.users) == ids and whole.next_page_token == ""
    first = await users.ListUsers(ListUsersRequest(email_domain=domain, page_size=2))
    last = await users.ListUsers(
        ListUsersRequest(email_domain=domain, page_size=2, page_token=first.next_page_token)
    )
    assert ids_of(first.users) + ids_of(last.users) == ids
    assert last.next_page_token == ""


async def test_empty_result_has_no_token(users: UserStub) -> None:
    page = await users.ListUsers(ListUsersRequest(email_domain=fresh_domain()))
    assert list(page.users) == [] and page.next_page_token == ""


async def test_negative_page_size_is_invalid(users: UserStub) -> None:
    failure = await fails(users.ListUsers(ListUsersRequest(page_size=-1)))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["page_size"]
    assert failure.info is not None and failure.info.reason == "INVALID_ARGUMENT"
    assert "page_size" in failure.message


async def test_basic_pages_are_capped_at_1000(users: UserStub, running: RunningServer) -> None:
    domain = fresh_domain()
    ids = await seed_users(running.engine, domain, 1001)
    page = await users.ListUsers(ListUsersRequest(email_domain=domain, page_size=5000))
    assert ids_of(page.users) == ids[:1000] and page.next_page_token
    rest = await users.ListUsers(
        ListUsersRequest(email_domain=domain, page_size=5000, page_token=page.next_page_token)
    )
    assert ids_of(rest.users) == ids[1000:] and rest.next_page_token == ""


async def test_full_pages_are_capped_at_200_and_view_may_change_between_pages(
    users: UserStub, running: RunningServer
) -> None:
    domain = fresh_domain()
    ids = await seed_users(running.engine, domain, 201, addresses_each=1)
    page = await users.ListUsers(ListUsersRequest(email_domain=domain, page_size=1000, view=FULL))
    assert ids_of(page.users) == ids[:200] and page.next_page_token
    assert all(len(u.addresses) == 1 for u in page.users)
    rest = await users.ListUsers(
        ListUsersRequest(
            email_domain=domain, page_size=7, view=BASIC, page_token=page.next_page_token
        )
    )
    assert ids_of(rest.users) == ids[200:] and rest.users[0].addresses == []


async def test_page_size_may_change_between_pages(users: UserStub, running: RunningServer) -> None:
    domain = fresh_domain()
    ids = await seed_users(running.engine, domain, 10)
    seen: list[int] = []
    token = ""
    for size in (1, 3, 2, 100):
        page = await users.ListUsers(
            ListUsersRequest(email_domain=domain, page_size=size, page_token=token)
        )
        seen += ids_of(page.users)
        token = page.next_page_token
    assert seen == ids and token == ""


async def test_unknown_view_is_invalid(users: UserStub) -> None:
    failure = await fails(users.ListUsers(ListUsersRequest(view=7)))  # type: ignore[arg-type]
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["view"]


@pytest.mark.parametrize("field", ORDERS)
@pytest.mark.parametrize("descending", [False, True])
async def test_order_by_sorts_with_ties_broken_by_id(
    users: UserStub, running: RunningServer, field: str, descending: bool
) -> None:
    domain = fresh_domain()
    await seed_users(running.engine, domain, len(NAMES), names=NAMES, times=TIMES)
    everyone = await list_all(users, ListUsersRequest(email_domain=domain, page_size=1000))

    def key(user: resources_pb2.User) -> tuple[object, int]:
        if field == "create_time":
            return (user.create_time.ToDatetime(), user.id)
        return (getattr(user, field), user.id)

    expected = sorted(everyone, key=key, reverse=descending)
    order_by = field + (" desc" if descending else "")
    for size in (1, 2, 1000):
        paged = await list_all(
            users, ListUsersRequest(email_domain=domain, order_by=order_by, page_size=size)
        )
        assert ids_of(paged) == ids_of(expected), (order_by, size)


async def test_name_order_is_by_code_point(users: UserStub, running: RunningServer) -> None:
    domain = fresh_domain()
    ids = await seed_users(running.engine, domain, 5, names=["b", "a ", "B", "a", "É"])
    paged = await list_all(users, ListUsersRequest(email_domain=domain, order_by="name"))
    assert [u.name for u in paged] == ["B", "a", "a ", "b", "É"]
    assert sorted(ids_of(paged)) == ids


async def test_redundant_spaces_in_order_by_are_insignificant(
    users: UserStub, running: RunningServer
) -> None:
    domain = fresh_domain()
    ids = await seed_users(running.engine, domain, 3)
    page = await users.ListUsers(ListUsersRequest(email_domain=domain, order_by="  id   desc "))
    assert ids_of(page.users) == ids[::-1]


@pytest.mark.parametrize(
    "order_by",
    ["age", "name asc", "name desc desc", "name, id", "NAME", "-name", "name\tdesc", "desc"],
)
async def test_unknown_order_by_is_invalid(users: UserStub, order_by: str) -> None:
    failure = await fails(users.ListUsers(ListUsersRequest(order_by=order_by)))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["order_by"]
    assert "order_by" in failure.message


async def test_email_filter_is_exact_and_case_insensitive(users: UserStub) -> None:
    domain = fresh_domain()
    created = await create_user(users, email=fresh_email(domain))
    await create_user(users, email="x" + created.email)
    found = await users.ListUsers(ListUsersRequest(email=created.email.upper()))
    assert ids_of(found.users) == [created.id]
    prefix = await users.ListUsers(ListUsersRequest(email=created.email[:-1]))
    assert list(prefix.users) == []


async def test_email_domain_is_the_whole_part_after_the_at(users: UserStub) -> None:
    domain = fresh_domain()
    inside = [await create_user(users, email=fresh_email(domain)) for _ in range(2)]
    for other in ("my" + domain, "sub." + domain, domain + ".org"):
        await create_user(users, email=fresh_email(other))
    page = await users.ListUsers(ListUsersRequest(email_domain=domain.upper()))
    assert ids_of(page.users) == [u.id for u in inside]


async def test_address_email_contains_is_case_insensitive_and_lists_each_user_once(
    users: UserStub,
) -> None:
    domain = fresh_domain()
    marker = domain.split(".")[0]
    twice = await create_user(
        users,
        email=fresh_email(domain),
        addresses=(f"home.{marker}@x.io", f"work.{marker}@y.io", "other@z.io"),
    )
    once = await create_user(users, email=fresh_email(domain), addresses=(f"{marker}@x.io",))
    await create_user(users, email=fresh_email(domain), addresses=("nothing@x.io",))
    page = await users.ListUsers(ListUsersRequest(address_email_contains=marker.upper()))
    assert ids_of(page.users) == [twice.id, once.id]
    full = await users.ListUsers(ListUsersRequest(address_email_contains=marker, view=FULL))
    assert [len(u.addresses) for u in full.users] == [3, 1]


@pytest.mark.parametrize(
    ("needle", "matches"),
    [
        ("%", ["a%b"]),
        ("_", ["a_b"]),
        ("/", ["a/b"]),
        ("a%b", ["a%b"]),
        ("a_b", ["a_b"]),
        ("a/b", ["a/b"]),
        ("\\", []),
        ("\\_", []),
        ("\\%", []),
        ("//", []),
        ("/_", []),
        ("axb", ["axb"]),
    ],
)
async def test_address_email_contains_treats_wildcards_literally(
    users: UserStub, needle: str, matches: list[str]
) -> None:
    domain = fresh_domain()
    owners = {
        local: await create_user(users, email=fresh_email(domain), addresses=(f"{local}@x.io",))
        for local in ("a%b", "a_b", "a/b", "axb")
    }
    page = await users.ListUsers(
        ListUsersRequest(email_domain=domain, address_email_contains=needle)
    )
    assert ids_of(page.users) == [owners[local].id for local in matches]


async def test_filters_combine_with_and(users: UserStub) -> None:
    domain, other = fresh_domain(), fresh_domain()
    marker = domain.split(".")[0]
    both = await create_user(users, email=fresh_email(domain), addresses=(f"{marker}@x.io",))
    await create_user(users, email=fresh_email(domain), addresses=("no@x.io",))
    await create_user(users, email=fresh_email(other), addresses=(f"{marker}2@x.io",))
    page = await users.ListUsers(
        ListUsersRequest(email_domain=domain, address_email_contains=marker)
    )
    assert ids_of(page.users) == [both.id]
    exact = await users.ListUsers(
        ListUsersRequest(email=both.email, email_domain=other, address_email_contains=marker)
    )
    assert list(exact.users) == []


async def test_every_bad_filter_is_reported_at_once(users: UserStub) -> None:
    request = ListUsersRequest(
        page_size=-5,
        email_domain="x" * 121,
        address_email_contains="a\x00b",
        email="\x01@x.io",
        order_by="shoe size",
    )
    failure = await fails(users.ListUsers(request))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == [
        "page_size",
        "email_domain",
        "address_email_contains",
        "email",
        "order_by",
    ]


async def test_email_domain_with_an_at_sign_is_invalid(users: UserStub) -> None:
    failure = await fails(users.ListUsers(ListUsersRequest(email_domain="@example.com")))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["email_domain"]


async def test_tokens_pass_through_unchanged_filters_in_other_case(
    users: UserStub, running: RunningServer
) -> None:
    domain = fresh_domain()
    ids = await seed_users(running.engine, domain, 3)
    first = await users.ListUsers(ListUsersRequest(email_domain=domain, page_size=2))
    rest = await users.ListUsers(
        request_with_token(ListUsersRequest(email_domain=domain.upper()), first.next_page_token)
    )
    assert ids_of(first.users) + ids_of(rest.users) == ids
