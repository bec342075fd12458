"""StreamUsers: every matching user after a position, in id order, in full batches.

Each batch is one keyset read (`id > last ORDER BY id LIMIT n`) in a transaction of its
own, read at most one batch ahead of the transport: no snapshot or connection is held
for the stream, a slow reader slows the reading (nothing piles up), and a cancelled
stream releases what it holds at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from service.domain import validation as check
from service.domain.listing import check_user_filter
from service.domain.models import View
from service.domain.ports import UnitOfWorkFactory
from service.domain.queries import UserFilter
from service.domain.rows import RowBatch

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


async def stream_users(new_uow: UnitOfWorkFactory, request: StreamInput) -> AsyncIterator[RowBatch]:
    """Batches of `batch_size` users; only the last may be short, and none is empty.

    The next batch is read while the transport sends the current one: one batch of
    read-ahead, which hides the database round trips, and no more, so a reader that
    stops still stops the reading.
    """
    stream = check_stream(request)
    with_addresses = stream.view is View.FULL

    async def read(after_id: int) -> RowBatch:
        async with new_uow.reading(stale_ok=True) as uow:
            return await uow.users.stream_rows(
                stream.user_filter, after_id, stream.batch_size, with_addresses=with_addresses
            )

    pending = asyncio.ensure_future(read(stream.after_id))
    try:
        while True:
            batch = await pending
            full = len(batch.users) == stream.batch_size
            if full:
                pending = asyncio.ensure_future(read(batch.users[-1][0]))
            if batch.users:
                yield batch
            if not full:
                return
    finally:
        # A cancelled or abandoned stream: the read ahead releases its connection too.
        pending.cancel()
        await asyncio.wait([pending])
        if not pending.cancelled():
            pending.exception()  # retrieved, so asyncio does not log it as lost
