"""Request bodies for the unit tests, and client streams for ImportUsers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from service.domain.bulk import RowInput
from service.domain.users import UserInput


def person(n: int, *addresses: str, domain: str = "unit.test") -> UserInput:
    return UserInput(name=f"User {n}", email=f"user{n}@{domain}", address_emails=addresses)


def rows(start: int, stop: int, *, request_ids: bool = False) -> list[RowInput]:
    """Rows start..stop-1, each with its own email (and request_id, if asked)."""
    return [
        RowInput(person(n), request_id=f"row-{n}" if request_ids else "")
        for n in range(start, stop)
    ]


def in_messages(rows: Sequence[RowInput], size: int = 1000) -> list[Sequence[RowInput]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


async def sent(messages: Sequence[Sequence[RowInput]]) -> AsyncIterator[Sequence[RowInput]]:
    """A client that sends these messages, then ends its stream."""
    for message in messages:
        yield message


async def then_silent(messages: Sequence[Sequence[RowInput]]) -> AsyncIterator[Sequence[RowInput]]:
    """A client that sends these messages, then neither sends nor ends its stream."""
    for message in messages:
        yield message
    await asyncio.Event().wait()
    yield []  # never reached
