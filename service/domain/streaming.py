"""StreamUsers: every matching user after a position, in id order, in full batches.

Each batch is one keyset read (`id > last ORDER BY id LIMIT n`) in a transaction of its
own, and the next is read only when the transport asks for it: no snapshot or
connection is held for the stream, a slow reader slows the reading (nothing piles up),
and a cancelled stream holds nothing to release.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from service.domain import validation as check
from service.domain.listing import Cursor, Ordering, UserFilter, UsersPageQuery, check_user_filter
from service.domain.models import User, View
from service.domain.ports import UnitOfWorkFactory

DEFAULT_BATCH = 500  # API.md: batch_size 0 means 500
BATCH_MAX = 1000  # API.md: larger sizes are capped


@dataclass(frozen=True, slots=True)
class StreamInput:
    """A StreamUsersRequest as a client sent it, before validation."""

    email_domain: str = ""
    address_email_contains: str = ""
    email: str = ""
    view: View = View.BASIC
    after_id: int = 0
    batch_size: int = 0


@dataclass(frozen=True, slots=True)
class _Stream:
    user_filter: UserFilter
    view: View
    after_id: int
    batch_size: int


def check_stream(request: StreamInput) -> _Stream:
    found = check.Violations()
    user_filter = check_user_filter(
        found, request.email_domain, request.address_email_contains, request.email
    )
    if request.after_id < 0:
        # API.md: 0 is "from the start" here, a negative id is malformed.
        found.add("after_id", f"must not be negative, got {request.after_id}")
    if request.batch_size < 0:
        found.add("batch_size", f"must not be negative, got {request.batch_size}")
    found.raise_if_any()
    size = DEFAULT_BATCH if request.batch_size == 0 else min(request.batch_size, BATCH_MAX)
    return _Stream(user_filter, request.view, request.after_id, size)


async def stream_users(
    new_uow: UnitOfWorkFactory, request: StreamInput
) -> AsyncIterator[list[User]]:
    """Batches of `batch_size` users; only the last may be short, and none is empty."""
    stream = check_stream(request)
    last = stream.after_id
    while True:
        query = UsersPageQuery(
            filter=stream.user_filter,
            ordering=Ordering(),
            after=Cursor(last, last) if last else None,
            limit=stream.batch_size,
            view=stream.view,
        )
        async with new_uow() as uow:
            batch = list(await uow.users.list_page(query))
        if batch:
            yield batch
        if len(batch) < stream.batch_size:
            return
        last = batch[-1].id
