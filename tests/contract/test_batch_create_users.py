"""BatchCreateUsers on every backend: atomic, in order, rows named by index, multi-row."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from users.v1 import resources_pb2, user_service_pb2

from service.server import RunningServer
from tests.rpc import UserStub, create_user, fails, fresh_email
from tests.statements import recorded_statements

Code = grpc.StatusCode


def row(
    email: str | None = None, name: str = "Bea", addresses: tuple[str, ...] = (), rid: str = ""
) -> user_service_pb2.CreateUserRequest:
    return user_service_pb2.CreateUserRequest(
        user=resources_pb2.User(
            name=name,
            email=email or fresh_email(),
            addresses=[resources_pb2.Address(email=a) for a in addresses],
        ),
        request_id=rid,
    )


def batch(*rows: user_service_pb2.CreateUserRequest) -> user_service_pb2.BatchCreateUsersRequest:
    return user_service_pb2.BatchCreateUsersRequest(requests=rows)


async def assert_free(users: UserStub, *emails: str) -> None:
    """Nothing of a failed batch stayed: each email can still be taken."""
    for email in emails:
        await create_user(users, email=email)


async def test_creates_every_user_in_request_order_in_full_view(users: UserStub) -> None:
    emails = [fresh_email() for _ in range(3)]
    response = await users.BatchCreateUsers(
        batch(
            row(emails[0].upper()), row(emails[1], addresses=("B@X.io", "c@x.io")), row(emails[2])
        )
    )
    assert [u.email for u in response.users] == emails
    assert [a.email for a in response.users[1].addresses] == ["b@x.io", "c@x.io"]
    assert response.users[0].id < response.users[1].id < response.users[2].id
    for created in response.users:
        assert created == await users.GetUser(user_service_pb2.GetUserRequest(id=created.id))


async def test_a_thousand_users_take_a_few_multi_row_statements(
    users: UserStub, running: RunningServer
) -> None:
    rows = [row(addresses=(f"a{i}@x.io",)) for i in range(1000)]
    with recorded_statements(running.engine) as seen:
        response = await users.BatchCreateUsers(batch(*rows))
    assert [u.email for u in response.users] == [r.user.email for r in rows]
    assert len({u.id for u in response.users}) == 1000
    assert all(len(u.addresses) == 1 for u in response.users)
    inserts = [s.statement for s in seen if s.statement.lstrip().upper().startswith("INSERT")]
    assert 2 <= len(inserts) <= 6, inserts[:8]


async def test_count_must_be_1_to_1000(users: UserStub) -> None:
    for count in (0, 1001):
        failure = await fails(users.BatchCreateUsers(batch(*[row() for _ in range(count)])))
        assert failure.code == Code.INVALID_ARGUMENT
        assert failure.fields == ["requests"]


async def test_every_bad_field_is_named_by_its_index_and_nothing_is_created(
    users: UserStub,
) -> None:
    good = fresh_email()
    failure = await fails(
        users.BatchCreateUsers(batch(row(good), row(name=""), row(), row("nope", addresses=("@",))))
    )
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == [
        "requests[1].user.name",
        "requests[3].user.email",
        "requests[3].user.addresses[0].email",
    ]
    await assert_free(users, good)


async def test_a_thousand_bad_rows_are_invalid_argument_with_the_first_listed(
    users: UserStub,
) -> None:
    # Every violation would not fit the trailer a client accepts (16 KiB): the first ones
    # are listed, and the total is in the ErrorInfo.
    failure = await fails(users.BatchCreateUsers(batch(*(row(name="x" * 51) for _ in range(1000)))))
    assert failure.code == Code.INVALID_ARGUMENT, failure.message
    assert failure.info is not None
    assert failure.info.metadata["violation_count"] == "1000"
    listed = int(failure.info.metadata["violations_listed"])
    assert 10 < listed < 1000
    assert failure.fields == [f"requests[{i}].user.name" for i in range(listed)]
    assert "and 995 more" in failure.message


async def test_duplicate_inside_the_batch_names_the_later_index(users: UserStub) -> None:
    twice, other = fresh_email(), fresh_email()
    failure = await fails(users.BatchCreateUsers(batch(row(twice), row(other), row(twice.upper()))))
    assert failure.code == Code.ALREADY_EXISTS
    assert failure.info is not None and failure.info.reason == "EMAIL_TAKEN"
    assert failure.info.metadata["field"] == "requests[2].user.email"
    assert "requests[2].user.email" in failure.message and "requests[0]" in failure.message
    await assert_free(users, twice, other)


async def test_duplicate_of_a_stored_user_names_its_index(users: UserStub) -> None:
    stored = await create_user(users)
    others = [fresh_email() for _ in range(4)]
    failure = await fails(
        users.BatchCreateUsers(batch(*[row(e) for e in others], row(stored.email.upper())))
    )
    assert failure.code == Code.ALREADY_EXISTS
    assert failure.info is not None and failure.info.metadata["field"] == "requests[4].user.email"
    assert stored.email in failure.message
    await assert_free(users, *others)


async def test_duplicate_request_ids_in_one_batch_are_invalid(users: UserStub) -> None:
    rid = str(uuid.uuid4())
    failure = await fails(users.BatchCreateUsers(batch(row(rid=rid), row(), row(rid=rid))))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["requests[2].request_id"]


async def test_retry_returns_the_same_users_in_their_current_state(users: UserStub) -> None:
    rows = [row(rid=str(uuid.uuid4())) for _ in range(3)]
    first = await users.BatchCreateUsers(batch(*rows))
    renamed = await users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=first.users[1].id, name="Renamed")
        )
    )
    extra = row(rid=str(uuid.uuid4()))
    again = await users.BatchCreateUsers(batch(*rows, extra))
    assert list(again.users[:3]) == [first.users[0], renamed, first.users[2]]
    assert again.users[3].email == extra.user.email
    assert again.users[3].id not in {u.id for u in first.users}


async def test_retry_after_a_delete_is_not_found(users: UserStub) -> None:
    rows = [row(rid=str(uuid.uuid4())) for _ in range(2)]
    first = await users.BatchCreateUsers(batch(*rows))
    await users.DeleteUser(user_service_pb2.DeleteUserRequest(id=first.users[1].id))
    failure = await fails(users.BatchCreateUsers(batch(*rows)))
    assert failure.code == Code.NOT_FOUND
    assert failure.resource is not None
    assert failure.resource.resource_name == str(first.users[1].id)


async def test_request_id_with_another_body_is_invalid(users: UserStub) -> None:
    rid = str(uuid.uuid4())
    await users.BatchCreateUsers(batch(row(), row(rid=rid)))
    failure = await fails(users.BatchCreateUsers(batch(row(), row(rid=rid))))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["requests[1].request_id"]
    assert failure.info is not None and failure.info.reason == "REQUEST_ID_REUSED"


async def test_request_ids_are_remembered_per_method(users: UserStub) -> None:
    rid = str(uuid.uuid4())
    single = await create_user(users, request_id=rid)
    response = await users.BatchCreateUsers(batch(row(rid=rid)))
    assert response.users[0].id != single.id


async def test_concurrent_retries_create_each_user_once(users: UserStub) -> None:
    rows = [row(rid=str(uuid.uuid4())) for _ in range(5)]
    results = await asyncio.gather(*(users.BatchCreateUsers(batch(*rows)) for _ in range(4)))
    assert len({tuple(u.id for u in r.users) for r in results}) == 1


async def test_concurrent_batches_racing_for_one_email_one_wins(users: UserStub) -> None:
    contested = fresh_email()
    calls = [
        users.BatchCreateUsers(batch(*[row() for _ in range(index)], row(contested)))
        for index in range(4)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    won = [r for r in results if isinstance(r, user_service_pb2.BatchCreateUsersResponse)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 3
    for index, result in enumerate(results):
        if isinstance(result, grpc.aio.AioRpcError):
            assert result.code() == Code.ALREADY_EXISTS
            assert f"requests[{index}].user.email" in (result.details() or "")
