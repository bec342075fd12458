"""Every error path, fed values that break naive drivers, reads as a clean sentence."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from users.v1 import resources_pb2, user_service_pb2

from tests.rpc import UserStub, create_user, fails

Code = grpc.StatusCode
INT64_MAX = 2**63 - 1
MEGABYTE = "x" * (1024 * 1024)

NASTY_STRINGS = [
    "a\x00b",
    "nul\x00@example.com",
    MEGABYTE,
    MEGABYTE + "@example.com",
    "😀" * 51,
    "e\u0301" * 26,
    "'; DROP TABLE users; --",
    "\\",
    "%_%",
    "\U0010ffff",
    "a" * 121 + "@x.io",
]
NASTY_IDS = [0, -1, INT64_MAX, -(2**63)]

# What leaks look like: SQL keywords, driver and library names, Python internals.
LEAK = re.compile(
    r"(?i)\b(select|insert|update\s+\w+\s+set|delete\s+from|sqlalchemy|asyncpg|aiomysql|"
    r"aiosqlite|sqlite3|pymysql|psycopg|traceback|exception|integrityerror|operationalerror|"
    r"file \"|line \d+|constraint failed|duplicate entry|violates)\b"
)


def assert_clean(message: str) -> None:
    assert LEAK.search(message) is None, f"leaky error message: {message[:300]!r}"
    assert len(message) < 2000, f"error message is {len(message)} characters long"
    assert "\x00" not in message


Call = Callable[[Any], Awaitable[Any]]


def calls_for_string(value: str) -> list[tuple[str, Call]]:
    def new_user(**fields: Any) -> user_service_pb2.CreateUserRequest:
        user = resources_pb2.User(name="Ana", email="ana.clean@example.com")
        for key, item in fields.items():
            setattr(user, key, item)
        return user_service_pb2.CreateUserRequest(user=user)

    return [
        ("create name", lambda s: s.CreateUser(new_user(name=value))),
        ("create email", lambda s: s.CreateUser(new_user(email=value))),
        (
            "create address",
            lambda s: s.CreateUser(
                user_service_pb2.CreateUserRequest(
                    user=resources_pb2.User(
                        name="Ana",
                        email="ana.address@example.com",
                        addresses=[resources_pb2.Address(email=value)],
                    )
                )
            ),
        ),
        (
            "create request_id",
            lambda s: s.CreateUser(
                user_service_pb2.CreateUserRequest(
                    user=resources_pb2.User(name="Ana", email="x" * 200), request_id=value
                )
            ),
        ),
        (
            "update mask",
            lambda s: s.UpdateUser(
                user_service_pb2.UpdateUserRequest(
                    user=resources_pb2.User(id=1, name="x"),
                    update_mask=field_mask_pb2.FieldMask(paths=[value]),
                )
            ),
        ),
        (
            "update email",
            lambda s: s.UpdateUser(
                user_service_pb2.UpdateUserRequest(user=resources_pb2.User(id=1, email=value))
            ),
        ),
        (
            "delete etag",
            lambda s: s.DeleteUser(user_service_pb2.DeleteUserRequest(id=INT64_MAX, etag=value)),
        ),
    ]


@pytest.mark.parametrize("value", NASTY_STRINGS, ids=lambda v: repr(v[:12]))
async def test_nasty_strings_get_clean_statuses(users: UserStub, value: str) -> None:
    for label, call in calls_for_string(value):
        try:
            await call(users)
        except grpc.aio.AioRpcError as error:
            assert error.code() in {
                Code.INVALID_ARGUMENT,
                Code.NOT_FOUND,
                Code.ALREADY_EXISTS,
            }, (label, error.code(), error.details())
            assert_clean(error.details() or "")
        else:
            # Only a value that is valid where it went may succeed; it must be stored as sent.
            assert label in {"update mask", "create request_id", "delete etag"} or len(value) < 60


@pytest.mark.parametrize("user_id", NASTY_IDS)
async def test_nasty_ids_get_clean_statuses(users: UserStub, user_id: int) -> None:
    calls: list[Awaitable[Any]] = [
        users.GetUser(user_service_pb2.GetUserRequest(id=user_id)),
        users.BatchGetUsers(user_service_pb2.BatchGetUsersRequest(ids=[user_id])),
        users.DeleteUser(user_service_pb2.DeleteUserRequest(id=user_id)),
        users.UpdateUser(
            user_service_pb2.UpdateUserRequest(user=resources_pb2.User(id=user_id, name="x"))
        ),
    ]
    expected = Code.NOT_FOUND if user_id > 0 else Code.INVALID_ARGUMENT
    for call in calls:
        failure = await fails(call)
        assert failure.code == expected
        assert failure.info is not None and failure.info.domain == "users.v1"
        assert_clean(failure.message)


async def test_conflict_paths_are_clean(users: UserStub) -> None:
    created = await create_user(users, addresses=("a@x.io",))
    conflicts: list[Awaitable[Any]] = [
        create_user(users, email=created.email),
        users.UpdateUser(
            user_service_pb2.UpdateUserRequest(
                user=resources_pb2.User(id=created.id, name="x", etag="nope")
            )
        ),
        users.DeleteUser(user_service_pb2.DeleteUserRequest(id=created.id)),
    ]
    for call in conflicts:
        failure = await fails(call)
        assert failure.info is not None and failure.info.reason
        assert re.fullmatch(r"[A-Z][A-Z_]+[A-Z]", failure.info.reason)
        assert_clean(failure.message)
