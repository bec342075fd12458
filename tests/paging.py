"""Helpers for listing tests: a domain of one's own, bulk seeding, paging to the end."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from users.v1 import address_service_pb2, resources_pb2, user_service_pb2

from service.db.tables import addresses, users
from service.domain.models import utc_now
from tests.rpc import AddressStub, UserStub

MAX_PAGES = 10_000


def fresh_domain() -> str:
    """A domain no other test uses: an email_domain filter on it sees only this test's rows."""
    return f"d{uuid.uuid4().hex[:12]}.example"


async def seed_users(
    engine: AsyncEngine,
    domain: str,
    count: int,
    *,
    names: Sequence[str] = (),
    times: Sequence[datetime] = (),
    addresses_each: int = 0,
) -> list[int]:
    """Inserts users straight into the database (hundreds of CreateUser calls would only
    slow the suite down); returns their ids in insertion order."""
    now = utc_now()
    tag = uuid.uuid4().hex[:8]
    rows = [
        {
            "name": names[i] if i < len(names) else f"Seeded {i:05d}",
            "email": f"s{i:05d}-{tag}@{domain}",
            "email_domain": domain,
            "create_time": times[i] if i < len(times) else now + timedelta(microseconds=i),
            "update_time": now,
            "version": 1,
        }
        for i in range(count)
    ]
    async with engine.begin() as connection:
        await connection.execute(insert(users), rows)
        ids = list(
            (
                await connection.execute(
                    select(users.c.id).where(users.c.email_domain == domain).order_by(users.c.id)
                )
            ).scalars()
        )
        if addresses_each:
            await connection.execute(
                insert(addresses),
                [
                    {
                        "user_id": user_id,
                        "email": f"a{n}-{user_id}@{domain}",
                        "create_time": now,
                        "update_time": now,
                        "version": 1,
                    }
                    for user_id in ids
                    for n in range(addresses_each)
                ],
            )
    return ids


async def list_all(
    stub: UserStub, request: user_service_pb2.ListUsersRequest
) -> list[resources_pb2.User]:
    """Every page of a ListUsers request, followed to the last."""
    found: list[resources_pb2.User] = []
    for _ in range(MAX_PAGES):
        page = await stub.ListUsers(request)
        found.extend(page.users)
        if not page.next_page_token:
            return found
        request = request_with_token(request, page.next_page_token)
    raise AssertionError("paging did not end")


def request_with_token(
    request: user_service_pb2.ListUsersRequest, token: str
) -> user_service_pb2.ListUsersRequest:
    following = user_service_pb2.ListUsersRequest()
    following.CopyFrom(request)
    following.page_token = token
    return following


async def list_all_addresses(
    stub: AddressStub, user_id: int, page_size: int
) -> list[resources_pb2.Address]:
    found: list[resources_pb2.Address] = []
    token = ""
    for _ in range(MAX_PAGES):
        page = await stub.ListAddresses(
            address_service_pb2.ListAddressesRequest(
                user_id=user_id, page_size=page_size, page_token=token
            )
        )
        found.extend(page.addresses)
        token = page.next_page_token
        if not token:
            return found
    raise AssertionError("paging did not end")


def ids_of(found: Sequence[resources_pb2.User]) -> list[int]:
    return [user.id for user in found]
