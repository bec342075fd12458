"""Helpers for contract tests: fresh data and decoded google.rpc error details."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import google.rpc.error_details_pb2 as error_details_pb2  # noqa: PLR0402 - namespace package
import grpc
from google.protobuf.message import Message
from grpc_status import rpc_status
from users.v1 import (
    address_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
    user_service_pb2_grpc,
)

# The asyncio stub classes exist only in the generated .pyi files.
if TYPE_CHECKING:
    UserStub = user_service_pb2_grpc.UserServiceAsyncStub
    AddressStub = address_service_pb2_grpc.AddressServiceAsyncStub
else:
    UserStub = user_service_pb2_grpc.UserServiceStub
    AddressStub = address_service_pb2_grpc.AddressServiceStub


def fresh_email(domain: str = "example.com") -> str:
    return f"u{uuid.uuid4().hex[:12]}@{domain}"


@dataclass
class Failure:
    """A failed call, with its google.rpc details unpacked."""

    code: grpc.StatusCode
    message: str
    info: error_details_pb2.ErrorInfo | None = None
    bad_request: error_details_pb2.BadRequest | None = None
    resource: error_details_pb2.ResourceInfo | None = None
    precondition: error_details_pb2.PreconditionFailure | None = None
    retry: error_details_pb2.RetryInfo | None = None
    other: list[Any] = field(default_factory=list)

    @property
    def fields(self) -> list[str]:
        assert self.bad_request is not None, self.message
        return [v.field for v in self.bad_request.field_violations]


_DETAIL_TYPES: dict[str, type[Message]] = {
    "info": error_details_pb2.ErrorInfo,
    "bad_request": error_details_pb2.BadRequest,
    "resource": error_details_pb2.ResourceInfo,
    "precondition": error_details_pb2.PreconditionFailure,
    "retry": error_details_pb2.RetryInfo,
}


def failure_of(error: grpc.aio.AioRpcError) -> Failure:
    failure = Failure(code=error.code(), message=error.details() or "")
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return failure
    for packed in status.details:
        for attribute, message_type in _DETAIL_TYPES.items():
            if packed.Is(message_type.DESCRIPTOR):
                detail = message_type()
                packed.Unpack(detail)
                setattr(failure, attribute, detail)
                break
        else:
            failure.other.append(packed)
    return failure


async def fails(call: Awaitable[Any]) -> Failure:
    """Awaits a call that must fail; returns its decoded failure."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return failure_of(error)
    raise AssertionError("the call succeeded but was expected to fail")


async def create_user(
    stub: UserStub,
    *,
    name: str = "Ana Lima",
    email: str | None = None,
    addresses: tuple[str, ...] = (),
    request_id: str = "",
) -> resources_pb2.User:
    user = resources_pb2.User(
        name=name,
        email=email or fresh_email(),
        addresses=[resources_pb2.Address(email=a) for a in addresses],
    )
    return await stub.CreateUser(
        user_service_pb2.CreateUserRequest(user=user, request_id=request_id)
    )
