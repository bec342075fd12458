"""CreateUser on every backend: validation, uniqueness, addresses, request_id."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from users.v1 import resources_pb2, user_service_pb2

from tests.rpc import UserStub, create_user, fails, fresh_email

Code = grpc.StatusCode


async def test_creates_user_with_addresses_lower_cased(users: UserStub) -> None:
    email = fresh_email()
    created = await create_user(
        users, name="Zoë Ångström", email=email.upper(), addresses=("Home@Example.org", "w@x.io")
    )
    assert created.id > 0
    assert created.email == email
    assert [a.email for a in created.addresses] == ["home@example.org", "w@x.io"]
    assert all(a.user_id == created.id and a.etag for a in created.addresses)
    assert created.create_time.seconds > 0 and created.create_time == created.update_time
    assert created.etag
    fetched = await users.GetUser(user_service_pb2.GetUserRequest(id=created.id))
    assert fetched == created


async def test_output_only_fields_are_ignored(users: UserStub) -> None:
    user = resources_pb2.User(id=999999, name="Bo", email=fresh_email(), etag="x")
    user.create_time.seconds = 5
    created = await users.CreateUser(user_service_pb2.CreateUserRequest(user=user))
    assert created.id != 999999
    assert created.create_time.seconds != 5
    assert created.etag != "x"


async def test_every_bad_field_is_reported_at_once(users: UserStub) -> None:
    user = resources_pb2.User(
        name="",
        email="not-an-email",
        addresses=[resources_pb2.Address(email="ok@example.com"), resources_pb2.Address(email="@")],
    )
    failure = await fails(users.CreateUser(user_service_pb2.CreateUserRequest(user=user)))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["user.name", "user.email", "user.addresses[1].email"]
    assert failure.info is not None and failure.info.domain == "users.v1"
    assert failure.info.reason == "INVALID_ARGUMENT"
    assert "user.name" in failure.message and "user.email" in failure.message


async def test_missing_user_is_invalid_argument(users: UserStub) -> None:
    failure = await fails(users.CreateUser(user_service_pb2.CreateUserRequest()))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["user"]


async def test_name_limits_count_code_points(users: UserStub) -> None:
    emoji_name = "😀" * 50
    created = await create_user(users, name=emoji_name)
    assert created.name == emoji_name
    combining = "e\u0301" * 25  # 50 code points, 25 graphemes
    assert (await create_user(users, name=combining)).name == combining
    failure = await fails(create_user(users, name="😀" * 51))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["user.name"]


async def test_blank_and_nul_names_are_invalid(users: UserStub) -> None:
    for bad in ("   ", "a\x00b", "\t"):
        failure = await fails(create_user(users, name=bad))
        assert failure.code == Code.INVALID_ARGUMENT, bad
        assert failure.fields == ["user.name"]


async def test_email_too_long_is_invalid(users: UserStub) -> None:
    long_email = "a" * 60 + "@" + "b" * 55 + ".com"  # 120 characters: fine
    assert len(long_email) == 120
    assert (await create_user(users, email=long_email)).email == long_email
    failure = await fails(create_user(users, email="a" + long_email))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["user.email"]


async def test_duplicate_email_is_already_exists_case_insensitively(users: UserStub) -> None:
    email = fresh_email()
    first = await create_user(users, email=email)
    failure = await fails(create_user(users, email=email.upper()))
    assert failure.code == Code.ALREADY_EXISTS
    assert failure.info is not None and failure.info.reason == "EMAIL_TAKEN"
    assert email in failure.message
    fetched = await users.GetUser(user_service_pb2.GetUserRequest(id=first.id))
    assert fetched == first


async def test_concurrent_same_email_exactly_one_wins(users: UserStub) -> None:
    email = fresh_email()
    results = await asyncio.gather(
        *(create_user(users, email=email) for _ in range(8)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, resources_pb2.User)]
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 1
    assert [f.code() for f in failed] == [Code.ALREADY_EXISTS] * 7


async def test_duplicate_address_in_request_is_invalid(users: UserStub) -> None:
    failure = await fails(create_user(users, addresses=("a@x.io", "A@X.io")))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["user.addresses[1]"]


async def test_more_than_100_addresses_is_invalid(users: UserStub) -> None:
    many = tuple(f"a{i}@x.io" for i in range(101))
    failure = await fails(create_user(users, addresses=many))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["user.addresses"]
    created = await create_user(users, addresses=many[:100])
    assert len(created.addresses) == 100


async def test_request_id_retry_returns_current_user(users: UserStub) -> None:
    request_id = str(uuid.uuid4())
    email = fresh_email()
    first = await create_user(users, email=email, request_id=request_id)
    again = await create_user(users, email=email, request_id=request_id)
    assert again == first


async def test_request_id_with_other_body_is_invalid(users: UserStub) -> None:
    request_id = str(uuid.uuid4())
    await create_user(users, request_id=request_id)
    failure = await fails(create_user(users, request_id=request_id))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["request_id"]
    assert failure.info is not None and failure.info.reason == "REQUEST_ID_REUSED"


async def test_request_id_retry_after_delete_is_not_found(users: UserStub) -> None:
    request_id = str(uuid.uuid4())
    email = fresh_email()
    first = await create_user(users, email=email, request_id=request_id)
    await users.DeleteUser(user_service_pb2.DeleteUserRequest(id=first.id))
    failure = await fails(create_user(users, email=email, request_id=request_id))
    assert failure.code == Code.NOT_FOUND


async def test_concurrent_retries_create_one_user(users: UserStub) -> None:
    request_id = str(uuid.uuid4())
    email = fresh_email()
    results = await asyncio.gather(
        *(create_user(users, email=email, request_id=request_id) for _ in range(6))
    )
    assert len({r.id for r in results}) == 1


async def test_request_id_too_long_is_invalid(users: UserStub) -> None:
    failure = await fails(create_user(users, request_id="r" * 65))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["request_id"]
