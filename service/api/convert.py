"""Proto <-> domain conversion; the only place that knows both shapes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from users.v1 import resources_pb2 as pb
from users.v1 import user_service_pb2

from service.domain.errors import FieldViolation, InvalidArgumentError
from service.domain.models import Address, Change, ChangeType, User, View, etag_of
from service.domain.queries import ListUsersInput
from service.domain.rows import AddressRow, RowBatch
from service.domain.users import UserInput

_VIEWS: dict[int, View] = {pb.USER_VIEW_BASIC: View.BASIC, pb.USER_VIEW_FULL: View.FULL}


def view_of(value: int, field: str = "view", default: View = View.FULL) -> View:
    if value == pb.USER_VIEW_UNSPECIFIED:
        return default
    if value not in _VIEWS:
        raise InvalidArgumentError(
            [FieldViolation(field, f"unknown view {value}: use USER_VIEW_BASIC or USER_VIEW_FULL")]
        )
    return _VIEWS[value]


def user_input_of(user: pb.User) -> UserInput:
    return UserInput(
        name=user.name, email=user.email, address_emails=[a.email for a in user.addresses]
    )


def list_users_input_of(request: user_service_pb2.ListUsersRequest) -> ListUsersInput:
    return ListUsersInput(
        page_size=request.page_size,
        page_token=request.page_token,
        email_domain=request.email_domain,
        address_email_contains=request.address_email_contains,
        email=request.email,
        order_by=request.order_by,
        # API.md: ListUsers defaults to BASIC.
        view=view_of(request.view, default=View.BASIC),
    )


def set_time(field: Timestamp, moment: datetime) -> None:
    # Filled in place, on every response's path: cheaper than building a Timestamp and
    # copying it in, and than Timestamp.FromDatetime (BENCHMARKS.md has the figures).
    field.seconds = int(moment.timestamp())
    field.nanos = moment.microsecond * 1000


def user_to_proto(user: User) -> pb.User:
    message = pb.User(id=user.id, name=user.name, email=user.email, etag=user.etag)
    set_time(message.create_time, user.create_time)
    set_time(message.update_time, user.update_time)
    if user.addresses:
        add = message.addresses.add
        for address in user.addresses:
            _fill_address(add(), address)
    return message


def address_to_proto(address: Address) -> pb.Address:
    message = pb.Address()
    _fill_address(message, address)
    return message


def _fill_address(message: pb.Address, address: Address) -> None:
    message.id = address.id
    message.user_id = address.user_id
    message.email = address.email
    message.etag = address.etag
    set_time(message.create_time, address.create_time)
    set_time(message.update_time, address.update_time)


def stream_response_of(batch: RowBatch) -> user_service_pb2.StreamUsersResponse:
    """StreamUsers' hot path: messages straight from rows, no User dataclass in between.

    Timestamps are given as dicts: upb fills the sub-message from one faster than from
    a Timestamp built and copied in.
    """
    response = user_service_pb2.StreamUsersResponse()
    add = response.users.add
    owned = batch.addresses
    for user_id, name, email, created, updated, version in batch.users:
        message = add(
            id=user_id,
            name=name,
            email=email,
            create_time={"seconds": created // 1_000_000, "nanos": created % 1_000_000 * 1000},
            update_time={"seconds": updated // 1_000_000, "nanos": updated % 1_000_000 * 1000},
            etag=etag_of("u", user_id, version),
        )
        if owned is not None:
            _add_addresses(message, owned.get(user_id, ()))
    return response


def _add_addresses(user: pb.User, rows: Iterable[AddressRow]) -> None:
    add = user.addresses.add
    for address_id, user_id, email, created, updated, version in rows:
        add(
            id=address_id,
            user_id=user_id,
            email=email,
            create_time={"seconds": created // 1_000_000, "nanos": created % 1_000_000 * 1000},
            update_time={"seconds": updated // 1_000_000, "nanos": updated % 1_000_000 * 1000},
            etag=etag_of("a", address_id, version),
        )


def change_to_proto(change: Change, resume_token: str) -> user_service_pb2.UserChange:
    kind = user_service_pb2.UserChange.Type.ValueType(change.type.value)
    message = user_service_pb2.UserChange(type=kind, resume_token=resume_token)
    if change.type is ChangeType.DELETED:
        # API.md: a deleted user is only its id and email.
        message.user.id, message.user.email = change.user.id, change.user.email
    else:
        message.user.CopyFrom(user_to_proto(change.user))
    set_time(message.commit_time, change.commit_time)
    return message
