"""DeleteUser: etag guard, addresses precondition, force."""

from __future__ import annotations

import grpc
from users.v1 import user_service_pb2

from tests.rpc import UserStub, create_user, fails

Code = grpc.StatusCode


async def test_deletes_and_then_not_found(users: UserStub) -> None:
    created = await create_user(users)
    await users.DeleteUser(user_service_pb2.DeleteUserRequest(id=created.id))
    failure = await fails(users.GetUser(user_service_pb2.GetUserRequest(id=created.id)))
    assert failure.code == Code.NOT_FOUND
    again = await fails(users.DeleteUser(user_service_pb2.DeleteUserRequest(id=created.id)))
    assert again.code == Code.NOT_FOUND


async def test_user_with_addresses_needs_force(users: UserStub) -> None:
    created = await create_user(users, addresses=("a@x.io", "b@x.io"))
    failure = await fails(users.DeleteUser(user_service_pb2.DeleteUserRequest(id=created.id)))
    assert failure.code == Code.FAILED_PRECONDITION
    assert "2 addresses" in failure.message and "force" in failure.message
    assert failure.precondition is not None
    assert failure.precondition.violations[0].subject == f"users/{created.id}"
    assert failure.info is not None and failure.info.reason == "USER_HAS_ADDRESSES"
    still = await users.GetUser(user_service_pb2.GetUserRequest(id=created.id))
    assert still == created
    await users.DeleteUser(user_service_pb2.DeleteUserRequest(id=created.id, force=True))
    gone = await fails(users.GetUser(user_service_pb2.GetUserRequest(id=created.id)))
    assert gone.code == Code.NOT_FOUND


async def test_stale_etag_is_aborted(users: UserStub) -> None:
    created = await create_user(users)
    failure = await fails(
        users.DeleteUser(user_service_pb2.DeleteUserRequest(id=created.id, etag="stale"))
    )
    assert failure.code == Code.ABORTED
    assert await users.GetUser(user_service_pb2.GetUserRequest(id=created.id)) == created
    await users.DeleteUser(user_service_pb2.DeleteUserRequest(id=created.id, etag=created.etag))


async def test_bad_ids(users: UserStub) -> None:
    for bad in (0, -1):
        failure = await fails(users.DeleteUser(user_service_pb2.DeleteUserRequest(id=bad)))
        assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["id"]
