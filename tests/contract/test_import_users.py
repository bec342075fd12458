"""ImportUsers on every backend: staged as it arrives, all or nothing, first bad row named."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import grpc
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from users.v1 import resources_pb2, user_service_pb2

from service import server
from service.config import Settings
from service.db.import_store import ImportStore
from service.db.tables import import_rows, imports
from service.db.tables import users as users_table
from service.domain import imports as import_rules
from service.domain.ports import ImportClashes, StagedUser
from tests.rpc import UserStub, create_user, fails, failure_of, fresh_email

Code = grpc.StatusCode
ImportCall = grpc.aio.StreamUnaryCall[
    user_service_pb2.ImportUsersRequest, user_service_pb2.ImportUsersResponse
]


def rows(count: int, rid: bool = False) -> list[user_service_pb2.CreateUserRequest]:
    return [
        user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(name=f"Imported {i}", email=fresh_email("import.test")),
            request_id=str(uuid.uuid4()) if rid else "",
        )
        for i in range(count)
    ]


def emails_of(sent: Sequence[user_service_pb2.CreateUserRequest]) -> list[str]:
    return [r.user.email for r in sent]


async def send(
    stub: UserStub, sent: Sequence[user_service_pb2.CreateUserRequest], per_message: int = 1000
) -> user_service_pb2.ImportUsersResponse:
    call: ImportCall = stub.ImportUsers(None)
    for start in range(0, len(sent), per_message):
        chunk = sent[start : start + per_message]
        await call.write(user_service_pb2.ImportUsersRequest(requests=chunk))
    await call.done_writing()
    return await call


async def stored(engine: AsyncEngine, emails: Sequence[str]) -> set[str]:
    async with engine.connect() as connection:
        found = await connection.execute(
            select(users_table.c.email).where(users_table.c.email.in_(emails))
        )
        return {row.email for row in found}


async def staged_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(select(func.count()).select_from(import_rows))
        return int(count or 0)


async def open_imports(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(select(func.count()).select_from(imports))
        return int(count or 0)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def assert_nothing_stayed(engine: AsyncEngine, emails: Sequence[str]) -> None:
    assert await stored(engine, emails) == set()
    await eventually(lambda: _is_zero(staged_rows(engine)))
    assert await open_imports(engine) == 0


async def _is_zero(count: Awaitable[int]) -> bool:
    return await count == 0


async def test_rows_are_staged_as_they_arrive_and_appear_all_at_once(
    users: UserStub, running: server.RunningServer
) -> None:
    sent = rows(2500)
    sent[-1].user.addresses.add(email="Home@Import.test")
    call: ImportCall = users.ImportUsers(None)
    await call.write(user_service_pb2.ImportUsersRequest(requests=sent[:1000]))
    await call.write(user_service_pb2.ImportUsersRequest(requests=sent[1000:2000]))
    await eventually(lambda: _at_least(staged_rows(running.engine), 2000))
    assert await stored(running.engine, emails_of(sent)) == set()  # invisible until the end
    await call.write(user_service_pb2.ImportUsersRequest(requests=sent[2000:]))
    await call.done_writing()
    response = await call
    assert response.created_count == 2500
    assert await stored(running.engine, emails_of(sent)) == set(emails_of(sent))
    async with running.engine.connect() as connection:
        last_id = await connection.scalar(
            select(users_table.c.id).where(users_table.c.email == sent[-1].user.email)
        )
    assert last_id is not None
    full = await users.GetUser(user_service_pb2.GetUserRequest(id=int(last_id)))
    assert [a.email for a in full.addresses] == ["home@import.test"]
    await assert_nothing_stayed(running.engine, [])


async def _at_least(count: Awaitable[int], floor: int) -> bool:
    return await count >= floor


async def test_small_messages_are_fine_and_an_empty_import_creates_nothing(
    users: UserStub, running: server.RunningServer
) -> None:
    sent = rows(30)
    assert (await send(users, sent, per_message=7)).created_count == 30
    assert (await send(users, [])).created_count == 0


async def test_first_invalid_row_is_named_by_its_stream_position(
    users: UserStub, running: server.RunningServer
) -> None:
    sent = rows(3000)
    sent[2100].user.email = "nope"
    sent[2500].user.name = ""
    failure = await fails(send(users, sent))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["requests[2100].user.email"]
    await assert_nothing_stayed(running.engine, emails_of(sent))


async def test_repeat_inside_the_stream_names_the_later_row(
    users: UserStub, running: server.RunningServer
) -> None:
    sent = rows(2000)
    sent[1500].user.email = sent[10].user.email.upper()
    failure = await fails(send(users, sent))
    assert failure.code == Code.ALREADY_EXISTS
    assert failure.info is not None and failure.info.reason == "EMAIL_TAKEN"
    assert failure.info.metadata["field"] == "requests[1500].user.email"
    sent = rows(20)
    sent[5].user.email = sent[2].user.email
    failure = await fails(send(users, sent))
    assert failure.info is not None and failure.info.metadata["field"] == "requests[5].user.email"
    await assert_nothing_stayed(running.engine, emails_of(sent))


async def test_stored_email_names_its_row_and_the_earliest_problem_wins(
    users: UserStub, running: server.RunningServer
) -> None:
    taken = await create_user(users)
    sent = rows(1500)
    sent[800].user.email = taken.email
    sent[900].user.email = "nope"
    failure = await fails(send(users, sent))
    assert failure.code == Code.ALREADY_EXISTS
    assert failure.info is not None and failure.info.metadata["field"] == "requests[800].user.email"
    await assert_nothing_stayed(running.engine, emails_of(sent[:800]))


async def test_oversized_message_and_too_many_rows_are_invalid(
    users: UserStub, running: server.RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    failure = await fails(send(users, rows(1001), per_message=1001))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["requests"]
    monkeypatch.setattr(import_rules, "IMPORT_MAX", 1500)
    sent = rows(2000)
    failure = await fails(send(users, sent))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["requests[1500]"]
    await assert_nothing_stayed(running.engine, emails_of(sent))


async def test_writers_are_not_blocked_meanwhile_and_a_taken_email_fails_the_end(
    users: UserStub, running: server.RunningServer
) -> None:
    existing = await create_user(users)
    sent = rows(1200)
    call: ImportCall = users.ImportUsers(None)
    await call.write(user_service_pb2.ImportUsersRequest(requests=sent[:1000]))
    await eventually(lambda: _at_least(staged_rows(running.engine), 1000))
    # No lock on users while the client sends: other writes go through at once, even
    # one that takes a staged email.
    await asyncio.wait_for(create_user(users, email=sent[5].user.email), 2)
    update = user_service_pb2.UpdateUserRequest(
        user=resources_pb2.User(id=existing.id, name="Still writable")
    )
    await asyncio.wait_for(users.UpdateUser(update), 2)
    await call.write(user_service_pb2.ImportUsersRequest(requests=sent[1000:]))
    await call.done_writing()
    failure = await fails(call)
    assert failure.code == Code.ALREADY_EXISTS
    assert failure.info is not None and failure.info.metadata["field"] == "requests[5].user.email"
    await assert_nothing_stayed(running.engine, emails_of(sent[6:]))


async def test_a_client_that_goes_away_leaves_nothing(
    users: UserStub, running: server.RunningServer
) -> None:
    sent = rows(2000)
    call: ImportCall = users.ImportUsers(None)
    await call.write(user_service_pb2.ImportUsersRequest(requests=sent[:1000]))
    await call.write(user_service_pb2.ImportUsersRequest(requests=sent[1000:]))
    await eventually(lambda: _at_least(staged_rows(running.engine), 2000))
    call.cancel()
    await assert_nothing_stayed(running.engine, emails_of(sent))


async def test_a_client_that_goes_away_while_a_chunk_is_written_leaves_nothing(
    users: UserStub, running: server.RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    writing = asyncio.Event()
    stage = ImportStore.stage

    async def stalled_after_the_first_chunk(
        store: ImportStore, import_id: str, staged: Sequence[StagedUser], now: datetime
    ) -> bool:
        written = await stage(store, import_id, staged, now)
        if staged and staged[0].stream_index >= 1000:
            writing.set()
            await asyncio.sleep(60)  # the chunk's transaction open, its rows copied
        return written

    monkeypatch.setattr(ImportStore, "stage", stalled_after_the_first_chunk)
    sent = rows(2000)
    call: ImportCall = users.ImportUsers(None)
    await call.write(user_service_pb2.ImportUsersRequest(requests=sent[:1000]))
    await call.write(user_service_pb2.ImportUsersRequest(requests=sent[1000:]))
    await asyncio.wait_for(writing.wait(), 5)
    call.cancel()
    await assert_nothing_stayed(running.engine, emails_of(sent))


async def test_a_silent_client_is_aborted_and_leaves_nothing(
    database_url: str, running: server.RunningServer
) -> None:
    settings = Settings(
        host="127.0.0.1", port=0, database_url=database_url, import_idle_seconds=1.0
    )
    impatient = await server.start(settings, migrate=False)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{impatient.port}") as channel:
            stub = UserStub(channel)
            sent = rows(10)
            call: ImportCall = stub.ImportUsers(None)
            await call.write(user_service_pb2.ImportUsersRequest(requests=sent))
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await asyncio.wait_for(call, 10)
            assert 0.9 < time.monotonic() - started < 5
            failure = failure_of(raised.value)
            assert failure.code == Code.ABORTED
            assert failure.info is not None and failure.info.reason == "IMPORT_IDLE_TIMEOUT"
            await assert_nothing_stayed(running.engine, emails_of(sent))
    finally:
        await impatient.stop(grace=1)


async def test_retry_with_request_ids_answers_as_the_first_call(
    users: UserStub, running: server.RunningServer
) -> None:
    sent = rows(1200, rid=True)
    assert (await send(users, sent)).created_count == 1200
    extra = rows(1, rid=True)
    assert (await send(users, sent + extra)).created_count == 1201
    assert await stored(running.engine, emails_of(extra)) == set(emails_of(extra))
    changed = rows(3)
    changed[2].request_id = sent[1100].request_id
    failure = await fails(send(users, changed))
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["requests[2].request_id"]
    assert failure.info is not None and failure.info.reason == "REQUEST_ID_REUSED"


async def test_repeated_request_id_in_the_stream_is_invalid(
    users: UserStub, running: server.RunningServer
) -> None:
    sent = rows(1300, rid=True)
    sent[1200].request_id = sent[3].request_id
    failure = await fails(send(users, sent))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["requests[1200].request_id"]
    await assert_nothing_stayed(running.engine, emails_of(sent))


async def test_a_request_id_recorded_meanwhile_by_another_import_fails_the_end(
    users: UserStub, running: server.RunningServer
) -> None:
    slow, fast = rows(1100), rows(1, rid=True)
    slow[50].request_id = fast[0].request_id
    call: ImportCall = users.ImportUsers(None)
    await call.write(user_service_pb2.ImportUsersRequest(requests=slow[:1000]))
    await eventually(lambda: _at_least(staged_rows(running.engine), 1000))
    # Row 50 is staged already: only the final transaction can see the id taken.
    assert (await send(users, fast)).created_count == 1
    await call.write(user_service_pb2.ImportUsersRequest(requests=slow[1000:]))
    await call.done_writing()
    failure = await fails(call)
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["requests[50].request_id"]
    assert failure.info is not None and failure.info.reason == "REQUEST_ID_REUSED"
    await assert_nothing_stayed(running.engine, emails_of(slow))


async def test_a_bad_row_fails_the_call_before_the_client_sends_more(
    users: UserStub, running: server.RunningServer
) -> None:
    taken = await create_user(users)
    sent = rows(1000)
    sent[10].user.email = taken.email
    call: ImportCall = users.ImportUsers(None)
    await call.write(user_service_pb2.ImportUsersRequest(requests=sent))
    # Neither more rows nor done_writing: the failed write alone ends the call.
    failure = await fails(asyncio.wait_for(call, 5))
    assert failure.code == Code.ALREADY_EXISTS
    assert failure.info is not None and failure.info.metadata["field"] == "requests[10].user.email"
    await assert_nothing_stayed(running.engine, emails_of(sent[:10] + sent[11:]))


async def test_a_chunks_clash_wins_over_an_invalid_row_of_the_next_chunk(
    users: UserStub, running: server.RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clashes = ImportStore.clashes

    async def slow_clashes(
        store: ImportStore, import_id: str, emails: Sequence[str], request_ids: Sequence[str]
    ) -> ImportClashes:
        # Chunk 0 still being written when chunk 1 arrives and is checked.
        await asyncio.sleep(0.5)
        return await clashes(store, import_id, emails, request_ids)

    monkeypatch.setattr(ImportStore, "clashes", slow_clashes)
    taken = await create_user(users)
    sent = rows(2000)
    sent[700].user.email = taken.email
    sent[1200].user.email = "nope"
    failure = await fails(send(users, sent))
    assert failure.code == Code.ALREADY_EXISTS
    assert failure.info is not None and failure.info.metadata["field"] == "requests[700].user.email"
    await assert_nothing_stayed(running.engine, emails_of(sent[:700] + sent[701:]))


async def test_a_repeat_of_a_row_staged_chunks_before_is_named_before_later_problems(
    users: UserStub, running: server.RunningServer
) -> None:
    taken = await create_user(users)
    sent = rows(4000, rid=True)
    sent[3500].user.email = sent[20].user.email
    sent[3600].user.email = taken.email
    sent[3700].user.email = "nope"
    failure = await fails(send(users, sent))
    assert failure.code == Code.ALREADY_EXISTS
    assert (
        failure.info is not None and failure.info.metadata["field"] == "requests[3500].user.email"
    )
    assert "an earlier row of this import" in failure.message
    sent = rows(4000)  # the repeat alone: only the unique constraint sees it
    sent[3900].user.email = sent[100].user.email
    failure = await fails(send(users, sent))
    assert failure.code == Code.ALREADY_EXISTS
    assert (
        failure.info is not None and failure.info.metadata["field"] == "requests[3900].user.email"
    )
    sent = rows(4000, rid=True)
    sent[3100].user.email = taken.email
    sent[3050].request_id = sent[7].request_id
    failure = await fails(send(users, sent))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["requests[3050].request_id"]
    await assert_nothing_stayed(running.engine, emails_of(sent[:3100] + sent[3101:]))


async def test_a_clean_import_never_probes_what_it_staged(
    users: UserStub, running: server.RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed: list[int] = []
    clashes = ImportStore.clashes

    async def counted_clashes(
        store: ImportStore, import_id: str, emails: Sequence[str], request_ids: Sequence[str]
    ) -> ImportClashes:
        probed.append(len(emails))
        return await clashes(store, import_id, emails, request_ids)

    monkeypatch.setattr(ImportStore, "clashes", counted_clashes)
    sent = rows(3000, rid=True)
    assert (await send(users, sent)).created_count == 3000
    # A retry replays every row: still nothing to probe in import_rows.
    assert (await send(users, sent)).created_count == 3000
    assert probed == []
