"""Housekeeping on every backend: request_ids kept 24 h then purged; abandoned imports purged."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from users.v1 import resources_pb2, user_service_pb2

from service import server
from service.config import Settings
from service.db.tables import import_addresses, import_rows, imports, request_ids
from service.db.uow import SqlUnitOfWork, SqlUnitOfWorkFactory
from service.domain import housekeeping
from service.domain.models import utc_now
from tests.rpc import UserStub, fresh_email

DAY = timedelta(hours=24)


async def remember(engine: AsyncEngine, age: timedelta, method: str = "CreateUser") -> str:
    key = str(uuid.uuid4())
    async with engine.begin() as connection:
        await connection.execute(
            insert(request_ids).values(
                method=method,
                request_id=key,
                fingerprint="0" * 64,
                resource_id=None,
                create_time=utc_now() - age,
            )
        )
    return key


async def remembered(engine: AsyncEngine, key: str) -> bool:
    async with engine.connect() as connection:
        found = await connection.scalar(
            select(func.count()).select_from(request_ids).where(request_ids.c.request_id == key)
        )
        return bool(found)


async def stage(engine: AsyncEngine, age: timedelta) -> str:
    import_id = uuid.uuid4().hex
    now = utc_now()
    async with engine.begin() as connection:
        await connection.execute(
            insert(imports).values(import_id=import_id, create_time=now, heartbeat_time=now - age)
        )
        await connection.execute(
            insert(import_rows).values(
                import_id=import_id,
                stream_index=0,
                name="Staged",
                email=fresh_email(),
                email_domain="example.com",
            )
        )
        await connection.execute(
            insert(import_addresses).values(
                import_id=import_id, stream_index=0, address_index=0, email="a@x.io"
            )
        )
    return import_id


async def staged(engine: AsyncEngine, import_id: str) -> int:
    async with engine.connect() as connection:
        total = 0
        for table in (imports, import_rows, import_addresses):
            count = await connection.scalar(
                select(func.count()).select_from(table).where(table.c.import_id == import_id)
            )
            total += int(count or 0)
        return total


async def test_request_ids_are_kept_24_hours_and_purged_after(
    running: server.RunningServer,
) -> None:
    old = await remember(running.engine, DAY + timedelta(minutes=1))
    young = await remember(running.engine, DAY - timedelta(minutes=1))
    purged = await housekeeping.purge_expired(SqlUnitOfWorkFactory(running.engine))
    assert purged.request_ids >= 1
    assert not await remembered(running.engine, old)
    assert await remembered(running.engine, young)


async def test_an_expired_request_id_is_a_new_request(
    running: server.RunningServer, users: UserStub
) -> None:
    key = await remember(running.engine, DAY + timedelta(minutes=1))
    user = resources_pb2.User(name="Late", email=fresh_email())
    created = await users.CreateUser(user_service_pb2.CreateUserRequest(user=user, request_id=key))
    assert created.email == user.email


async def test_abandoned_imports_are_purged_and_live_ones_kept(
    running: server.RunningServer,
) -> None:
    abandoned = await stage(running.engine, timedelta(hours=2))
    live = await stage(running.engine, timedelta(seconds=5))
    try:
        purged = await housekeeping.purge_expired(SqlUnitOfWorkFactory(running.engine))
        assert purged.imports >= 1
        assert await staged(running.engine, abandoned) == 0
        assert await staged(running.engine, live) == 3
    finally:
        async with SqlUnitOfWork(running.engine) as uow:
            await uow.imports.discard(live)
            await uow.commit()


async def test_the_server_purges_when_it_starts(
    database_url: str, running: server.RunningServer
) -> None:
    old = await remember(running.engine, DAY + timedelta(hours=1), method="BatchCreateUsers")
    abandoned = await stage(running.engine, timedelta(hours=3))
    restarted = await server.start(
        Settings(host="127.0.0.1", port=0, database_url=database_url), migrate=False
    )
    try:
        deadline = time.monotonic() + 5
        while await remembered(running.engine, old) or await staged(running.engine, abandoned):
            assert time.monotonic() < deadline, "the start-up purge did not run"
            await asyncio.sleep(0.05)
    finally:
        await restarted.stop(grace=1)
