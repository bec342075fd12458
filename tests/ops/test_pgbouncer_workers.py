"""Four service workers behind PgBouncer in transaction mode (10 server connections for
all of them), issue 15 item 3: creates with request ids, reads, paging across workers,
streams, an import and a watch (LISTEN on the direct URL) at once, all succeed."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
from users.v1 import resources_pb2, user_service_pb2

from tests.backends import ADMIN_URLS, fresh_database
from tests.ops.test_replicas import SERVICE_CONFIG
from tests.pgbouncer import PgBouncer
from tests.process.server_process import ServerProcess, free_port
from tests.rpc import UserStub

WORKERS = 4
CHANNELS = 8  # connections, which SO_REUSEPORT spreads over the workers
CREATES = 160
IN_FLIGHT = 32  # calls at once: within what 4 workers admit on 2 cores
IMPORTED = 2_000
WAIT_SECONDS = 30.0


def email(domain: str, tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@{domain}"


async def creates(stubs: list[UserStub], domain: str) -> list[resources_pb2.User]:
    at_once = asyncio.Semaphore(IN_FLIGHT)

    async def one(n: int) -> resources_pb2.User:
        async with at_once:
            return await create_twice_and_get(n)

    async def create_twice_and_get(n: int) -> resources_pb2.User:
        request = user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(name=f"P{n}", email=email(domain, "c")),
            request_id=uuid.uuid4().hex,
        )
        stub = stubs[n % len(stubs)]
        created = await stub.CreateUser(request, timeout=20)
        again = await stubs[(n + 1) % len(stubs)].CreateUser(request, timeout=20)
        assert again.id == created.id, "a retried create made another user"
        fetched = await stubs[(n + 2) % len(stubs)].GetUser(
            user_service_pb2.GetUserRequest(id=created.id), timeout=20
        )
        assert fetched.etag == created.etag
        return created

    return list(await asyncio.gather(*(one(n) for n in range(CREATES))))


async def pages(stubs: list[UserStub], domain: str) -> list[int]:
    ids: list[int] = []
    token = ""
    for turn in range(10_000):
        page = await stubs[turn % len(stubs)].ListUsers(
            user_service_pb2.ListUsersRequest(
                page_size=37, page_token=token, email_domain=domain, order_by="id"
            ),
            timeout=20,
        )
        ids += [u.id for u in page.users]
        token = page.next_page_token
        if not token:
            return ids
    raise AssertionError("paging never ended")


async def import_users(stub: UserStub, domain: str) -> int:
    messages = [
        user_service_pb2.ImportUsersRequest(
            requests=[
                user_service_pb2.CreateUserRequest(
                    user=resources_pb2.User(name="I", email=email(domain, f"i{m}-{n}"))
                )
                for n in range(500)
            ]
        )
        for m in range(IMPORTED // 500)
    ]
    response = await stub.ImportUsers(iter(messages), timeout=60)
    return int(response.created_count)


async def test_four_workers_through_pgbouncer_serve_everything(tmp_path: Path) -> None:
    domain, watched = "pooled.example", "watched.example"
    async with fresh_database("postgresql", tmp_path) as direct:
        with PgBouncer(ADMIN_URLS["postgresql"]) as bouncer:
            port = free_port()
            args = [
                *("--port", str(port), "--workers", str(WORKERS)),
                *("--database-url", bouncer.url_for(direct), "--database-pooler", "pgbouncer"),
                *("--direct-database-url", direct),
            ]
            with ServerProcess(tmp_path, args, port=port) as server:
                # The published service config: a client retries the refusals of a busy
                # worker (UNAVAILABLE, OVERLOADED) as clients are told to.
                options = [("grpc.service_config", SERVICE_CONFIG.read_text())]
                channels = [
                    grpc.aio.insecure_channel(server.target, options=options)
                    for _ in range(CHANNELS)
                ]
                stubs = [UserStub(c) for c in channels]
                try:
                    watch = stubs[0].WatchUsers(
                        user_service_pb2.WatchUsersRequest(email_domain=watched)
                    )
                    await watch.initial_metadata()
                    made, imported = await asyncio.gather(
                        creates(stubs, domain), import_users(stubs[1], domain)
                    )
                    listed = await pages(stubs, domain)
                    streamed = [
                        u.id
                        async for r in stubs[2].StreamUsers(
                            user_service_pb2.StreamUsersRequest(email_domain=domain),
                            timeout=20,
                        )
                        for u in r.users
                    ]
                    seen = [
                        await stubs[n % CHANNELS].CreateUser(
                            user_service_pb2.CreateUserRequest(
                                user=resources_pb2.User(name="W", email=email(watched, "w"))
                            ),
                            timeout=20,
                        )
                        for n in range(5)
                    ]
                    changes: list[user_service_pb2.UserChange] = []
                    async with asyncio.timeout(WAIT_SECONDS):
                        while len(changes) < len(seen):
                            message = await watch.read()
                            assert isinstance(message, user_service_pb2.UserChange)
                            changes.append(message)
                    watch.cancel()
                finally:
                    for channel in channels:
                        await channel.close(None)
                assert server.terminate(30) == 0, server.stderr
            log = server.stderr
    assert imported == IMPORTED
    assert sorted(listed) == listed and len(listed) == CREATES + IMPORTED
    assert set(listed) >= {u.id for u in made}
    assert streamed == listed
    assert [c.user.id for c in changes] == [u.id for u in seen]
    assert "Traceback" not in log and " ERROR " not in log, log
