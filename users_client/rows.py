"""A user to create, as CreateUser, BatchCreateUsers and ImportUsers take it, and the
messages ImportUsers takes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TypeVar

from users.v1 import resources_pb2, user_service_pb2

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NewUser:
    name: str
    email: str
    addresses: tuple[str, ...] = ()  # address emails, created with the user
    # API.md: a retried create with the same request_id is not doubled. None: the
    # client makes one up (a UUID); "" sends none.
    request_id: str | None = None


def new_request_id() -> str:
    return str(uuid.uuid4())


def create_request(row: NewUser) -> user_service_pb2.CreateUserRequest:
    """A row without a request_id gets a new one: a retried CreateUser or BatchCreateUsers
    then returns what the first attempt made instead of doubling it."""
    user = resources_pb2.User(
        name=row.name,
        email=row.email,
        addresses=[resources_pb2.Address(email=email) for email in row.addresses],
    )
    request_id = new_request_id() if row.request_id is None else row.request_id
    return user_service_pb2.CreateUserRequest(user=user, request_id=request_id)


async def import_messages(
    rows: Iterable[NewUser] | AsyncIterable[NewUser], chunk: int
) -> AsyncIterator[user_service_pb2.ImportUsersRequest]:
    """ImportUsers messages of `chunk` rows; a row without a request_id sends none (an
    import is not retried)."""
    # Rows are built in place (add, then set fields): appending a ready message copies it.
    message = user_service_pb2.ImportUsersRequest()
    requests = message.requests
    async for row in _asynchronous(rows):
        user = requests.add(request_id=row.request_id or "").user
        user.name = row.name
        user.email = row.email
        for email in row.addresses:
            user.addresses.add(email=email)
        if len(requests) >= chunk:
            yield message
            message = user_service_pb2.ImportUsersRequest()
            requests = message.requests
    if requests:
        yield message


async def _asynchronous(rows: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            yield row
    else:
        for row in rows:
            yield row
