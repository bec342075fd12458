"""users_client.UsersClient against a real server on every backend: calls, paging,
streams, imports, watches and typed errors."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from users.v1 import user_service_pb2

import users_client
from service.server import RunningServer
from users_client import NewUser, UsersClient

WAIT_SECONDS = 10.0


def fresh_domain() -> str:
    return f"c{uuid.uuid4().hex[:10]}.example"


@pytest.fixture
async def client(running: RunningServer) -> AsyncIterator[UsersClient]:
    async with UsersClient(f"127.0.0.1:{running.port}") as opened:
        yield opened


async def test_create_get_update_delete(client: UsersClient) -> None:
    domain = fresh_domain()
    created = await client.create_user("Ann", f"Ann@{domain}", addresses=[f"a1@{domain}"])
    assert created.email == f"ann@{domain}"
    assert [a.email for a in created.addresses] == [f"a1@{domain}"]
    got = await client.get_user(created.id, view=users_client.BASIC)
    assert (got.name, list(got.addresses)) == ("Ann", [])
    updated = await client.update_user(created.id, name="Ann B", etag=created.etag)
    assert (updated.name, updated.email) == ("Ann B", f"ann@{domain}")
    await client.delete_user(created.id, force=True)
    with pytest.raises(users_client.UserNotFoundError) as raised:
        await client.get_user(created.id)
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert raised.value.reason == "USER_NOT_FOUND"
    assert raised.value.metadata == {"id": str(created.id)}


async def test_a_create_retried_with_its_request_id_is_not_doubled(client: UsersClient) -> None:
    email = f"once@{fresh_domain()}"
    request_id = str(uuid.uuid4())
    first = await client.create_user("Once", email, request_id=request_id)
    again = await client.create_user("Once", email, request_id=request_id)
    assert again.id == first.id


async def test_failures_are_typed_with_reason_metadata_and_violations(
    client: UsersClient,
) -> None:
    domain = fresh_domain()
    user = await client.create_user("Bo", f"bo@{domain}", addresses=[f"x@{domain}"])
    with pytest.raises(users_client.EmailTakenError) as taken:
        await client.create_user("Bo 2", f"BO@{domain}")
    assert (taken.value.code, taken.value.reason) == (grpc.StatusCode.ALREADY_EXISTS, "EMAIL_TAKEN")
    assert taken.value.metadata == {"field": "user.email"}

    with pytest.raises(users_client.InvalidArgumentError) as invalid:
        await client.create_user("", "not-an-email")
    assert {v.field for v in invalid.value.field_violations} == {"user.name", "user.email"}

    await client.update_user(user.id, name="Bo B")
    with pytest.raises(users_client.StaleEtagError) as stale:
        await client.update_user(user.id, name="Bo C", etag=user.etag)
    assert (stale.value.code, stale.value.reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")

    with pytest.raises(users_client.UserHasAddressesError) as has_addresses:
        await client.delete_user(user.id)
    assert has_addresses.value.metadata == {"id": str(user.id), "address_count": "1"}
    assert (await client.get_user(user.id)).name == "Bo B"


async def test_list_users_and_list_addresses_go_through_every_page(client: UsersClient) -> None:
    domain = fresh_domain()
    created = await client.batch_create_users(
        [NewUser(f"L{i}", f"l{i}@{domain}") for i in range(7)]
    )
    listed = [u.id async for u in client.list_users(email_domain=domain, page_size=2)]
    assert listed == [u.id for u in created]

    owner = created[0]
    addresses = [(await client.create_address(owner.id, f"ad{i}@{domain}")).id for i in range(5)]
    assert [a.id async for a in client.list_addresses(owner.id, page_size=2)] == addresses


async def test_stream_users_from_after_id(client: UsersClient) -> None:
    domain = fresh_domain()
    created = await client.batch_create_users(
        [NewUser(f"S{i}", f"s{i}@{domain}") for i in range(9)]
    )
    ids = [u.id for u in created]
    streamed = [u.id async for u in client.stream_users(email_domain=domain, batch_size=2)]
    assert streamed == ids
    after = [u.id async for u in client.stream_users(email_domain=domain, after_id=ids[3])]
    assert after == ids[4:]


async def test_import_users_sends_rows_in_chunks(client: UsersClient) -> None:
    domain = fresh_domain()
    sent: list[int] = []
    rows = [NewUser(f"I{i}", f"i{i}@{domain}", (f"ia{i}@{domain}",)) for i in range(7)]
    assert await client.import_users(rows, chunk=3, on_sent=sent.append) == 7
    assert sent == [3, 3, 1]
    imported = [u async for u in client.stream_users(email_domain=domain, view=users_client.FULL)]
    assert [(u.name, [a.email for a in u.addresses]) for u in imported] == [
        (row.name, list(row.addresses)) for row in rows
    ]


async def test_a_bad_import_row_names_its_position_and_nothing_is_written(
    client: UsersClient,
) -> None:
    domain = fresh_domain()
    rows = [NewUser(f"B{i}", f"b{i}@{domain}") for i in range(6)]
    rows[4] = NewUser("B4", "not-an-email")
    with pytest.raises(users_client.InvalidArgumentError) as invalid:
        await client.import_users(rows, chunk=2)
    assert [v.field for v in invalid.value.field_violations] == ["requests[4].user.email"]
    assert [u async for u in client.list_users(email_domain=domain)] == []


async def test_an_import_whose_rows_fail_is_cancelled_and_writes_nothing(
    client: UsersClient,
) -> None:
    domain = fresh_domain()

    def rows() -> list[NewUser]:
        raise OSError("the file went away")

    async def failing() -> AsyncIterator[NewUser]:
        for i in range(5):
            yield NewUser(f"F{i}", f"f{i}@{domain}")
        rows()

    with pytest.raises(OSError, match="went away"):
        await client.import_users(failing(), chunk=2)
    assert [u async for u in client.list_users(email_domain=domain)] == []


async def test_watch_users_sees_changes_and_resumes_from_its_token(client: UsersClient) -> None:
    domain = fresh_domain()
    first = client.watch_users(email_domain=domain)
    received: asyncio.Queue[user_service_pb2.UserChange] = asyncio.Queue()
    # A watch is read by a task of its own: grpc.aio cancels a call whose read is cancelled.
    reader = asyncio.create_task(_read_into(first, received))
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            await first.on()
            user = await client.create_user("W", f"w@{domain}")
            change = await received.get()
        assert (change.type, change.user.id) == (user_service_pb2.UserChange.TYPE_CREATED, user.id)
        assert first.resume_token == change.resume_token
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    await client.update_user(user.id, name="W2")
    resumed = client.watch_users(email_domain=domain, resume_token=first.resume_token)
    async with asyncio.timeout(WAIT_SECONDS):
        async for change in resumed:
            assert (change.type, change.user.name) == (
                user_service_pb2.UserChange.TYPE_UPDATED,
                "W2",
            )
            break


async def _read_into(
    watch: users_client.Watch, queue: asyncio.Queue[user_service_pb2.UserChange]
) -> None:
    async for change in watch:
        queue.put_nowait(change)


async def test_the_blocking_client(running: RunningServer) -> None:
    domain = fresh_domain()

    def use() -> list[str]:
        with users_client.BlockingUsersClient(f"127.0.0.1:{running.port}") as blocking:
            blocking.create_user("Sync", f"sync@{domain}")
            blocking.batch_create_users([NewUser("Sync 2", f"sync2@{domain}")])
            with pytest.raises(users_client.EmailTakenError):
                blocking.create_user("Sync", f"sync@{domain}")
            return [u.name for u in blocking.list_users(email_domain=domain, page_size=1)]

    # The server under test runs on this event loop: the blocking calls go to a thread.
    assert await asyncio.to_thread(use) == ["Sync", "Sync 2"]
