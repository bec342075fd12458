"""A user to create, as CreateUser, BatchCreateUsers and ImportUsers take it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from users.v1 import resources_pb2, user_service_pb2


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


def create_request(
    row: NewUser, *, make_request_id: bool = True
) -> user_service_pb2.CreateUserRequest:
    """`make_request_id`: a row without one gets a new one (CreateUser, BatchCreateUsers:
    their retries must not double a user); ImportUsers is not retried, and sends none."""
    user = resources_pb2.User(
        name=row.name,
        email=row.email,
        addresses=[resources_pb2.Address(email=email) for email in row.addresses],
    )
    request_id = row.request_id
    if request_id is None:
        request_id = new_request_id() if make_request_id else ""
    return user_service_pb2.CreateUserRequest(user=user, request_id=request_id)
