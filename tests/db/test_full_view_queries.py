"""FULL view without N+1: the statements a page sends do not grow with its size."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from users.v1 import resources_pb2, user_service_pb2

from service.server import RunningServer
from tests.paging import fresh_domain, seed_users
from tests.rpc import UserStub
from tests.statements import recorded_statements

FULL = resources_pb2.USER_VIEW_FULL
SIZES = (1, 50, 200)
T = TypeVar("T")


async def counted(engine: AsyncEngine, call: Awaitable[T]) -> tuple[int, T]:
    """The call's result, and how many statements the server sent to answer it."""
    with recorded_statements(engine) as sent:
        result = await call
    return len(sent), result


async def test_full_list_pages_cost_the_same_statements_for_1_50_and_200_users(
    users: UserStub, running: RunningServer
) -> None:
    domain = fresh_domain()
    await seed_users(running.engine, domain, max(SIZES), addresses_each=2)
    # A warm pool: a connection opened mid-measurement would add its own set-up statements.
    await users.ListUsers(user_service_pb2.ListUsersRequest(email_domain=domain, view=FULL))
    counts = {}
    for size in SIZES:
        request = user_service_pb2.ListUsersRequest(
            email_domain=domain, page_size=size, view=FULL, order_by="name"
        )
        counts[size], page = await counted(running.engine, users.ListUsers(request))
        assert len(page.users) == size
        assert all(len(user.addresses) == 2 for user in page.users)
        assert {a.user_id for u in page.users for a in u.addresses} == {u.id for u in page.users}
    assert set(counts.values()) == {counts[1]}, counts
    # One for the users, one for all their addresses.
    assert counts[1] == 2, counts


async def test_batch_get_full_costs_the_same_statements_for_1_and_200_users(
    users: UserStub, running: RunningServer
) -> None:
    ids = await seed_users(running.engine, fresh_domain(), 200, addresses_each=1)
    counts = []
    for wanted in (ids[:1], ids):
        request = user_service_pb2.BatchGetUsersRequest(ids=wanted, view=FULL)
        count, found = await counted(running.engine, users.BatchGetUsers(request))
        assert len(found.users) == len(wanted)
        counts.append(count)
    assert counts[0] == counts[1], counts
