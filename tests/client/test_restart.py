"""users_client across a server restart on every backend: a stream, a listing and a watch
that were open when the server stopped go on by themselves once it is back on the port,
with nothing skipped or repeated."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from users.v1 import resources_pb2, user_service_pb2

from tests.process.server_process import ServerProcess, free_port
from users_client import NewUser, UsersClient, Watch

# Far more than a connection's flow-control window holds, or a fast server would have
# sent the whole stream before it stopped.
USERS = 30_000
BATCH = 100
WAIT_SECONDS = 60.0
GRACE = "1"


async def test_stream_list_and_watch_resume_across_a_server_restart(
    database_url: str, tmp_path: Path
) -> None:
    domain = f"r{uuid.uuid4().hex[:10]}.example"
    # Watched writes go to a domain of their own: the stream includes users created during it.
    watched = f"w{uuid.uuid4().hex[:10]}.example"
    port = free_port()
    args = ["--port", str(port), "--host", "127.0.0.1", "--database-url", database_url]
    args += ["--grace-seconds", GRACE, "--access-log", "all"]
    # Long enough to sit out the restart (a second server's start-up takes seconds).
    client = UsersClient(f"127.0.0.1:{port}", resume_seconds=WAIT_SECONDS)
    changes: asyncio.Queue[user_service_pb2.UserChange] = asyncio.Queue()
    watching: asyncio.Task[None] | None = None
    try:
        with ServerProcess(tmp_path, args, port=port) as before:
            rows = [NewUser(f"R{i}", f"r{i}@{domain}") for i in range(USERS)]
            assert await client.import_users(rows) == USERS
            stream = client.stream_user_batches(email_domain=domain, batch_size=BATCH)
            streamed = [u.id for u in await anext(stream)]
            listing = client.list_users(email_domain=domain, page_size=BATCH)
            listed = [(await anext(listing)).id for _ in range(BATCH)]
            watch = client.watch_users(email_domain=watched)
            watching = asyncio.create_task(_read_into(watch, changes))
            async with asyncio.timeout(WAIT_SECONDS):
                await watch.on()
            seen_before = await client.create_user("Before", f"before@{watched}")
            # Nothing is read while the server drains: the stream stalls on flow control
            # (far more users than a connection's window holds), and the drain ends it.
            assert await asyncio.to_thread(before.terminate, 30) == 0, before.stderr
        # The rest is read while the server is down and once it is back.
        rest = asyncio.create_task(_ids(stream))
        rest_listed = asyncio.create_task(_listed_ids(listing))
        await asyncio.sleep(0.5)
        assert not rest.done(), "the stream ended while the server was down"
        assert not rest_listed.done(), "the listing ended while the server was down"
        with ServerProcess(tmp_path, args, port=port) as after:
            async with asyncio.timeout(WAIT_SECONDS):
                streamed += await rest
                listed += await rest_listed
                seen_after = await client.create_user("After", f"after@{watched}")
                received = [await changes.get(), await changes.get()]
            # The second server served the resumed calls (a watch is logged when it ends;
            # the change it delivered says it resumed).
            assert "StreamUsers" in after.stderr
            assert "ListUsers" in after.stderr
    finally:
        if watching is not None:
            watching.cancel()
        await client.close()
    ids = sorted(streamed)
    assert streamed == ids == listed and len(set(ids)) == USERS
    assert [(c.type, c.user.id) for c in received] == [
        (user_service_pb2.UserChange.TYPE_CREATED, seen_before.id),
        (user_service_pb2.UserChange.TYPE_CREATED, seen_after.id),
    ]
    assert changes.empty()


async def _ids(batches: AsyncIterator[list[resources_pb2.User]]) -> list[int]:
    ids: list[int] = []
    async for batch in batches:
        ids += [user.id for user in batch]
    return ids


async def _listed_ids(users: AsyncIterator[resources_pb2.User]) -> list[int]:
    return [user.id async for user in users]


async def _read_into(watch: Watch, queue: asyncio.Queue[user_service_pb2.UserChange]) -> None:
    async for change in watch:
        queue.put_nowait(change)
