"""StreamUsers on every backend: batches, filters, resumption, backpressure, cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from users.v1 import resources_pb2, user_service_pb2

from service.db.engine import create_engine
from service.server import RunningServer
from tests.rpc import UserStub, create_user, fails, fresh_email
from tests.seeding import Seeded, seed_users, unseed
from tests.statements import recorded_statements

Code = grpc.StatusCode
Request = user_service_pb2.StreamUsersRequest
Call = grpc.aio.UnaryStreamCall[Request, user_service_pb2.StreamUsersResponse]
SEEDED = 20_000
# A client that grants the server a small, fixed HTTP/2 window (grpc grows it to
# megabytes by default), so the batches in flight while it pauses are few and known.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)]


@pytest.fixture(scope="module")
async def seeded(running: RunningServer) -> AsyncIterator[Seeded]:
    made = await seed_users(running.engine, SEEDED)
    yield made
    await unseed(running.engine, made)


async def batches(call: Call) -> list[list[int]]:
    return [[u.id for u in message.users] async for message in call]


async def read_ids(call: Call, messages: int | None = None) -> list[int]:
    """Ids of the next `messages` messages (all that are left if None), read with read()."""
    ids: list[int] = []
    while messages is None or messages > 0:
        message = await call.read()
        if not isinstance(message, user_service_pb2.StreamUsersResponse):  # EOF
            assert messages is None, "the stream ended early"
            break
        ids.extend(u.id for u in message.users)
        messages = None if messages is None else messages - 1
    return ids


def checked_out(engine: AsyncEngine) -> int:
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


def is_user_read(statement: str) -> bool:
    """A SELECT on users: one a keyset batch of the stream."""
    return statement.lstrip().upper().startswith("SELECT") and "FROM users" in statement


async def test_every_user_after_id_in_full_batches_by_id(users: UserStub, seeded: Seeded) -> None:
    after = seeded.last_id - 2500
    sizes = {0: [500] * 5, 700: [700, 700, 700, 400], 5000: [1000, 1000, 500]}
    for batch_size, expected in sizes.items():
        request = Request(email_domain=seeded.domain, after_id=after, batch_size=batch_size)
        got = await batches(users.StreamUsers(request))
        assert [len(b) for b in got] == expected
        assert [i for b in got for i in b] == list(range(after + 1, seeded.last_id + 1))
    exact = Request(email_domain=seeded.domain, after_id=seeded.last_id - 2000, batch_size=1000)
    assert [len(b) for b in await batches(users.StreamUsers(exact))] == [1000, 1000]
    beyond = Request(email_domain=seeded.domain, after_id=seeded.last_id)
    assert await batches(users.StreamUsers(beyond)) == []


async def test_basic_by_default_full_on_request_with_every_list_filter(users: UserStub) -> None:
    domain = f"{fresh_email().split('@')[0]}.test"
    rows = [
        user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(
                name=f"S{i}",
                email=fresh_email(domain),
                addresses=[resources_pb2.Address(email=f"home{i % 3}_%@x.io")],
            )
        )
        for i in range(9)
    ]
    created = await users.BatchCreateUsers(user_service_pb2.BatchCreateUsersRequest(requests=rows))
    ids = [u.id for u in created.users]

    async def streamed(**fields: Any) -> list[resources_pb2.User]:
        call = users.StreamUsers(Request(email_domain=domain.upper(), batch_size=4, **fields))
        return [u async for message in call for u in message.users]

    basic = await streamed()
    assert [u.id for u in basic] == ids and all(not u.addresses for u in basic)
    full = await streamed(view=resources_pb2.USER_VIEW_FULL)
    assert list(full) == list(created.users)
    assert [u.id for u in await streamed(address_email_contains="ME1_%")] == ids[1::3]
    assert [u.id for u in await streamed(email=rows[4].user.email.upper())] == [ids[4]]
    assert [u.id for u in await streamed(after_id=ids[6])] == ids[7:]


async def test_bad_requests_are_invalid_before_any_message(users: UserStub) -> None:
    cases = {
        "batch_size": Request(batch_size=-1),
        "after_id": Request(after_id=-5),
        "view": Request(view=7),  # type: ignore[arg-type]
        "email_domain": Request(email_domain="a\x00b"),
    }
    for field, request in cases.items():
        failure = await fails(users.StreamUsers(request).read())
        assert failure.code == Code.INVALID_ARGUMENT, field
        assert failure.fields == [field]


async def test_users_created_during_the_stream_beyond_it_are_included(
    running: RunningServer, users: UserStub
) -> None:
    domain = f"{fresh_email().split('@')[0]}.test"
    for _ in range(2):
        rows = [
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(name="T", email=fresh_email(domain))
            )
            for _ in range(1000)
        ]
        await users.BatchCreateUsers(user_service_pb2.BatchCreateUsersRequest(requests=rows))
    # A small window: the server cannot have read to the end before the late user exists.
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{running.port}", options=SMALL_WINDOW
    ) as channel:
        call = UserStub(channel).StreamUsers(Request(email_domain=domain, batch_size=100))
        first = await read_ids(call, 1)
        late = await users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(name="L", email=fresh_email(domain))
            )
        )
        rest = await read_ids(call)
    assert rest[-1] == late.id and len(first) + len(rest) == 2001


async def test_a_cut_stream_resumes_after_the_last_id_exactly(
    users: UserStub, seeded: Seeded
) -> None:
    start = seeded.last_id - 5000
    call = users.StreamUsers(Request(email_domain=seeded.domain, after_id=start, batch_size=300))
    before = await read_ids(call, 3)
    call.cancel()
    resumed = users.StreamUsers(Request(email_domain=seeded.domain, after_id=before[-1]))
    after = [i for b in await batches(resumed) for i in b]
    assert before + after == list(range(start + 1, seeded.last_id + 1))


async def test_a_paused_reader_stops_the_reading_and_holds_no_connection(
    running: RunningServer, seeded: Seeded
) -> None:
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{running.port}", options=SMALL_WINDOW
    ) as channel:
        stub = UserStub(channel)
        request = Request(email_domain=seeded.domain, after_id=seeded.first_id - 1, batch_size=100)
        with recorded_statements(running.engine, keep=is_user_read) as reads:
            call = stub.StreamUsers(request)
            received = await read_ids(call, 1)
            await asyncio.sleep(0.8)
            read_ahead = len(reads)
            await asyncio.sleep(1.2)
            # 200 batches match; a reader that stopped lets only a few be read ahead.
            assert len(reads) == read_ahead <= 12
            assert checked_out(running.engine) == 0
            received += await read_ids(call)
        assert received == list(range(seeded.first_id, seeded.last_id + 1))
        assert len(reads) == 201  # the last, short read finds nothing after the end


async def test_a_cancelled_stream_releases_its_connection_at_once(
    running: RunningServer, seeded: Seeded, backend: str, database_url: str
) -> None:
    request = Request(
        email_domain=seeded.domain,
        after_id=seeded.first_id - 1,
        batch_size=1000,
        view=resources_pb2.USER_VIEW_FULL,
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        call = UserStub(channel).StreamUsers(request)
        await read_ids(call, 1)
        call.cancel()
        cancelled = time.monotonic()
    while checked_out(running.engine):
        assert time.monotonic() - cancelled < 1.0, "the stream kept its connection"
        await asyncio.sleep(0.01)
    if backend in ("postgresql", "pgbouncer"):
        await assert_no_active_query(database_url, within=1.0 - (time.monotonic() - cancelled))


async def assert_no_active_query(database_url: str, within: float) -> None:
    """PostgreSQL: no session of the test database is running a read of users or
    addresses any more. Other work of the server (the change feed sequencing the seed's
    changes, a driver's type introspection) may run meanwhile and is not the stream's."""
    observer = create_engine(database_url, pool_size=1)
    reads = (
        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND state = 'active' AND query ~* '\\mFROM (users|addresses)\\M'"
    )
    deadline = time.monotonic() + max(within, 0.05)
    try:
        async with observer.connect() as connection:
            while await connection.scalar(text(f"SELECT count(*) {reads}")):
                if time.monotonic() >= deadline:
                    running = (await connection.execute(text(f"SELECT query {reads}"))).all()
                    raise AssertionError(f"a query still runs for the stream: {running}")
                await asyncio.sleep(0.01)
    finally:
        await observer.dispose()


async def test_streamed_users_carry_the_stored_times_and_etags_to_the_microsecond(
    users: UserStub,
) -> None:
    # On PostgreSQL the stream's times are computed by the server as epoch microseconds
    # (stream_reads.py), not read as the columns GetUser reads: the two must agree.
    domain = f"{fresh_email().split('@')[0]}.times.test"
    made = [
        await create_user(users, email=fresh_email(domain), addresses=(fresh_email(),))
        for _ in range(20)
    ]
    updated = await users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=made[0].id, name="Renamed", etag=made[0].etag),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        )
    )
    stored = {u.id: u for u in made} | {updated.id: updated}
    for view in (resources_pb2.USER_VIEW_BASIC, resources_pb2.USER_VIEW_FULL):
        streamed = [
            u
            async for message in users.StreamUsers(Request(email_domain=domain, view=view))
            for u in message.users
        ]
        assert [u.id for u in streamed] == sorted(stored)
        for user in streamed:
            expected = stored[user.id]
            assert user.create_time == expected.create_time
            assert user.update_time == expected.update_time
            assert user.etag == expected.etag
            if view == resources_pb2.USER_VIEW_FULL:
                assert list(user.addresses) == list(expected.addresses)
