"""UpdateUser: mask rules, etags, uniqueness, nothing changed on failure."""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2
from users.v1 import resources_pb2, user_service_pb2

from tests.rpc import UserStub, create_user, fails, fresh_email

Code = grpc.StatusCode


def update(user: resources_pb2.User, *paths: str) -> user_service_pb2.UpdateUserRequest:
    return user_service_pb2.UpdateUserRequest(
        user=user, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
    )


async def get(users: UserStub, user_id: int) -> resources_pb2.User:
    return await users.GetUser(user_service_pb2.GetUserRequest(id=user_id))


async def test_mask_writes_only_named_fields(users: UserStub) -> None:
    created = await create_user(users, name="Old")
    changed = resources_pb2.User(id=created.id, name="New", email=fresh_email())
    updated = await users.UpdateUser(update(changed, "name"))
    assert updated.name == "New" and updated.email == created.email
    assert updated.etag != created.etag
    assert updated.update_time.ToDatetime() > created.update_time.ToDatetime()
    assert updated.create_time == created.create_time
    assert await get(users, created.id) == updated


async def test_empty_mask_writes_every_set_field(users: UserStub) -> None:
    created = await create_user(users, name="Old")
    email = fresh_email()
    updated = await users.UpdateUser(update(resources_pb2.User(id=created.id, email=email.upper())))
    assert updated.email == email and updated.name == "Old"


async def test_star_writes_both_and_requires_both(users: UserStub) -> None:
    created = await create_user(users)
    email = fresh_email()
    updated = await users.UpdateUser(
        update(resources_pb2.User(id=created.id, name="Both", email=email), "*")
    )
    assert (updated.name, updated.email) == ("Both", email)
    failure = await fails(users.UpdateUser(update(resources_pb2.User(id=created.id), "*")))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["user.name", "user.email"]


async def test_output_only_paths_are_ignored(users: UserStub) -> None:
    created = await create_user(users)
    request = update(
        resources_pb2.User(id=created.id, name="Kept", etag=""),
        "name",
        "create_time",
        "update_time",
        "etag",
        "id",
        "addresses",
    )
    assert (await users.UpdateUser(request)).name == "Kept"


async def test_unknown_path_is_invalid_and_changes_nothing(users: UserStub) -> None:
    created = await create_user(users)
    request = update(resources_pb2.User(id=created.id, name="X"), "name", "nickname")
    failure = await fails(users.UpdateUser(request))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["update_mask"]
    assert "nickname" in failure.message
    assert await get(users, created.id) == created


async def test_stale_etag_is_aborted_and_current_etag_works(users: UserStub) -> None:
    created = await create_user(users)
    first = await users.UpdateUser(
        update(resources_pb2.User(id=created.id, name="One", etag=created.etag), "name")
    )
    failure = await fails(
        users.UpdateUser(update(resources_pb2.User(id=created.id, name="Two", etag=created.etag)))
    )
    assert failure.code == Code.ABORTED
    assert failure.info is not None and failure.info.reason == "ETAG_MISMATCH"
    assert await get(users, created.id) == first
    second = await users.UpdateUser(
        update(resources_pb2.User(id=created.id, name="Two", etag=first.etag))
    )
    assert second.name == "Two"


async def test_taken_email_is_already_exists(users: UserStub) -> None:
    other = await create_user(users)
    created = await create_user(users)
    failure = await fails(
        users.UpdateUser(update(resources_pb2.User(id=created.id, email=other.email.upper())))
    )
    assert failure.code == Code.ALREADY_EXISTS
    assert failure.info is not None and failure.info.reason == "EMAIL_TAKEN"
    assert await get(users, created.id) == created


async def test_own_email_in_other_case_is_fine(users: UserStub) -> None:
    created = await create_user(users)
    updated = await users.UpdateUser(
        update(resources_pb2.User(id=created.id, email=created.email.upper()), "email")
    )
    assert updated.email == created.email


async def test_missing_and_absent_ids(users: UserStub) -> None:
    missing = await fails(users.UpdateUser(update(resources_pb2.User(name="x"), "name")))
    assert missing.code == Code.INVALID_ARGUMENT and missing.fields == ["user.id"]
    absent = await fails(
        users.UpdateUser(update(resources_pb2.User(id=2**63 - 1, name="x"), "name"))
    )
    assert absent.code == Code.NOT_FOUND


async def test_bad_values_and_paths_reported_together(users: UserStub) -> None:
    created = await create_user(users)
    request = update(resources_pb2.User(id=created.id, name=" ", email="bad"), "*", "bogus")
    failure = await fails(users.UpdateUser(request))
    assert failure.code == Code.INVALID_ARGUMENT
    assert sorted(failure.fields) == ["update_mask", "user.email", "user.name"]
