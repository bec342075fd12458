"""GetUser and BatchGetUsers: views, order, missing ids, bad ids."""

from __future__ import annotations

import grpc
from users.v1 import resources_pb2, user_service_pb2

from tests.rpc import UserStub, create_user, fails

Code = grpc.StatusCode
BASIC = resources_pb2.USER_VIEW_BASIC
FULL = resources_pb2.USER_VIEW_FULL
INT64_MAX = 2**63 - 1


async def test_views(users: UserStub) -> None:
    created = await create_user(users, addresses=("a@x.io",))
    default = await users.GetUser(user_service_pb2.GetUserRequest(id=created.id))
    full = await users.GetUser(user_service_pb2.GetUserRequest(id=created.id, view=FULL))
    basic = await users.GetUser(user_service_pb2.GetUserRequest(id=created.id, view=BASIC))
    assert default == full == created
    assert len(basic.addresses) == 0
    assert basic.etag == created.etag and basic.email == created.email


async def test_absent_user_is_not_found_with_resource_info(users: UserStub) -> None:
    failure = await fails(users.GetUser(user_service_pb2.GetUserRequest(id=INT64_MAX)))
    assert failure.code == Code.NOT_FOUND
    assert failure.resource is not None
    assert failure.resource.resource_type == "users.v1.User"
    assert failure.resource.resource_name == str(INT64_MAX)
    assert failure.info is not None and failure.info.reason == "USER_NOT_FOUND"
    assert failure.info.metadata["id"] == str(INT64_MAX)


async def test_zero_and_negative_ids_are_invalid(users: UserStub) -> None:
    for bad, words in ((0, "required"), (-1, "positive"), (-(2**63), "positive")):
        failure = await fails(users.GetUser(user_service_pb2.GetUserRequest(id=bad)))
        assert failure.code == Code.INVALID_ARGUMENT
        assert failure.fields == ["id"]
        assert words in failure.message


async def test_unknown_view_is_invalid(users: UserStub) -> None:
    created = await create_user(users)
    request = user_service_pb2.GetUserRequest(id=created.id, view=7)  # type: ignore[arg-type]
    failure = await fails(users.GetUser(request))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["view"]


async def test_batch_keeps_request_order_and_repeats(users: UserStub) -> None:
    first = await create_user(users, addresses=("one@x.io",))
    second = await create_user(users)
    got = await users.BatchGetUsers(
        user_service_pb2.BatchGetUsersRequest(ids=[second.id, first.id, second.id])
    )
    assert [u.id for u in got.users] == [second.id, first.id, second.id]
    assert got.users[1] == first  # FULL by default
    basic = await users.BatchGetUsers(
        user_service_pb2.BatchGetUsersRequest(ids=[first.id], view=BASIC)
    )
    assert len(basic.users[0].addresses) == 0


async def test_batch_with_absent_id_names_the_first(users: UserStub) -> None:
    present = await create_user(users)
    request = user_service_pb2.BatchGetUsersRequest(ids=[present.id, INT64_MAX, INT64_MAX - 1])
    failure = await fails(users.BatchGetUsers(request))
    assert failure.code == Code.NOT_FOUND
    assert failure.resource is not None and failure.resource.resource_name == str(INT64_MAX)


async def test_batch_size_limits(users: UserStub) -> None:
    empty = await fails(users.BatchGetUsers(user_service_pb2.BatchGetUsersRequest()))
    assert empty.code == Code.INVALID_ARGUMENT and empty.fields == ["ids"]
    too_many = user_service_pb2.BatchGetUsersRequest(ids=list(range(1, 1002)))
    failure = await fails(users.BatchGetUsers(too_many))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["ids"]


async def test_batch_of_1000_works(users: UserStub) -> None:
    created = await create_user(users)
    got = await users.BatchGetUsers(user_service_pb2.BatchGetUsersRequest(ids=[created.id] * 1000))
    assert len(got.users) == 1000


async def test_batch_reports_every_bad_id(users: UserStub) -> None:
    request = user_service_pb2.BatchGetUsersRequest(ids=[5, 0, -3])
    failure = await fails(users.BatchGetUsers(request))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["ids[1]", "ids[2]"]
