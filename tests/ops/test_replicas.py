"""Three replicas of the service on one database behind a client with round_robin and the
published service config (deploy/grpc/service_config.json): paging, streaming and creates
with request ids spread over all three, and one replica SIGKILLed mid-load. Every call
succeeds or fails retryably (UNAVAILABLE), and no acknowledged write is lost or doubled
(issue 15, item 1)."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from users.v1 import resources_pb2, user_service_pb2

from tests.backends import fresh_database, selected_backends
from tests.process.server_process import ServerProcess, free_port
from tests.rpc import UserStub

SERVICE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "grpc" / "service_config.json"
REPLICAS = 3
DOMAIN = "replicas.example"
LOAD_SECONDS = 3.0
KILL_AFTER_SECONDS = 1.0
RETRIES = 20  # a client's own retries of a create with its request_id, after grpc's
RETRYABLE = {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}


@dataclass
class Outcomes:
    codes: Counter[str] = field(default_factory=Counter)
    created: dict[str, int] = field(default_factory=dict)  # request_id -> acknowledged id
    pages: int = 0
    streamed: int = 0

    def note(self, method: str, code: grpc.StatusCode) -> None:
        self.codes[f"{method} {code.name}"] += 1


def channel_over(ports: list[int]) -> grpc.aio.Channel:
    addresses = ",".join(f"127.0.0.1:{port}" for port in ports)
    return grpc.aio.insecure_channel(
        f"ipv4:{addresses}",
        options=[
            ("grpc.service_config", SERVICE_CONFIG.read_text()),
            ("grpc.enable_retries", 1),
        ],
    )


async def creator(stub: UserStub, outcomes: Outcomes, stop: asyncio.Event) -> None:
    """Creates with a request_id; a create that fails UNAVAILABLE after grpc's retries is
    sent again with the same request_id until it is acknowledged."""
    while not stop.is_set():
        request_id = uuid.uuid4().hex
        request = user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(name="Replica", email=f"{request_id}@{DOMAIN}"),
            request_id=request_id,
        )
        for _ in range(RETRIES):
            try:
                user = await stub.CreateUser(request, timeout=5)
            except grpc.aio.AioRpcError as error:
                outcomes.note("CreateUser", error.code())
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                await asyncio.sleep(0.05)
                continue
            outcomes.note("CreateUser", grpc.StatusCode.OK)
            outcomes.created[request_id] = user.id
            break


async def pager(stub: UserStub, outcomes: Outcomes, stop: asyncio.Event) -> None:
    """Pages through the domain, five users a page: each page token may be read by
    another replica than the one that issued it."""
    while not stop.is_set():
        token, previous = "", 0
        while True:
            request = user_service_pb2.ListUsersRequest(
                page_size=5, page_token=token, email_domain=DOMAIN, order_by="id"
            )
            try:
                page = await stub.ListUsers(request, timeout=5)
            except grpc.aio.AioRpcError as error:
                outcomes.note("ListUsers", error.code())
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                continue  # the same page again
            outcomes.note("ListUsers", grpc.StatusCode.OK)
            outcomes.pages += 1
            ids = [u.id for u in page.users]
            assert ids == sorted(ids) and (not ids or ids[0] > previous), ids
            previous = ids[-1] if ids else previous
            token = page.next_page_token
            if not token:
                break


async def streamer(stub: UserStub, outcomes: Outcomes, stop: asyncio.Event) -> None:
    """Streams the domain; a stream broken off resumes after the last id it received."""
    while not stop.is_set():
        after = 0
        request = user_service_pb2.StreamUsersRequest(email_domain=DOMAIN, batch_size=3)
        while True:
            request.after_id = after
            try:
                async for response in stub.StreamUsers(request, timeout=5):
                    ids = [u.id for u in response.users]
                    assert ids and ids[0] > after, (after, ids)
                    after = ids[-1]
                    outcomes.streamed += len(ids)
            except grpc.aio.AioRpcError as error:
                outcomes.note("StreamUsers", error.code())
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                continue
            outcomes.note("StreamUsers", grpc.StatusCode.OK)
            break


async def stored_users(url: str) -> dict[str, int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT email, id FROM users WHERE email_domain = :d"), {"d": DOMAIN}
            )
            return {str(r.email): int(r.id) for r in rows}
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", selected_backends())
async def test_three_replicas_one_killed_lose_and_double_nothing(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        ports = [free_port() for _ in range(REPLICAS)]
        servers = [
            ServerProcess(
                tmp_path,
                [
                    *("--host", "127.0.0.1", "--port", str(port), "--database-url", url),
                    *("--access-log", "all", "--grace-seconds", "1"),
                ],
                port=port,
            )
            for port in ports
        ]
        # The first start migrates; the others find the schema at HEAD.
        servers[0].__enter__()
        try:
            for server in servers[1:]:
                server.__enter__()
            outcomes = Outcomes()
            async with channel_over(ports) as channel:
                stub = UserStub(channel)
                stop = asyncio.Event()
                workers = [
                    asyncio.create_task(work(stub, outcomes, stop))
                    for work in itertools.chain(
                        itertools.repeat(creator, 6), (pager, pager), (streamer, streamer)
                    )
                ]
                await asyncio.sleep(KILL_AFTER_SECONDS)
                killed = servers[1].terminate(5, signal.SIGKILL)
                await asyncio.sleep(LOAD_SECONDS - KILL_AFTER_SECONDS)
                stop.set()
                await asyncio.gather(*workers)
            logs = [server.stderr for server in servers]
        finally:
            for server in servers:
                server.__exit__(None, None, None)
        stored = await stored_users(url)

    assert killed == -signal.SIGKILL
    assert {c.split(" ")[1] for c in outcomes.codes} <= {c.name for c in RETRYABLE}, outcomes
    assert outcomes.created and outcomes.pages and outcomes.streamed, outcomes
    # Every replica served calls, the killed one until it died.
    served = [log.count(" users.calls: ") for log in logs]
    assert all(served), served
    # No acknowledged create lost, none doubled: each request_id made one user, its email
    # is stored once with the acknowledged id, and nothing else was created.
    acknowledged = {f"{rid}@{DOMAIN}": user_id for rid, user_id in outcomes.created.items()}
    assert {e: stored.get(e) for e in acknowledged} == acknowledged
    unacknowledged = set(stored) - set(acknowledged)
    assert len(unacknowledged) <= 6, unacknowledged  # at most one in flight per creator
    for log in logs:
        assert "Traceback" not in log, log


def test_the_published_service_config_retries_only_unavailable() -> None:
    config = json.loads(SERVICE_CONFIG.read_text())
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    [method_config] = config["methodConfig"]
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    named = {(n["service"], n["method"]) for n in method_config["name"]}
    # Writes other than creates (which carry a request_id) are never retried.
    assert not {m for _, m in named} & {
        "UpdateUser",
        "DeleteUser",
        "ImportUsers",
        "CreateAddress",
        "UpdateAddress",
        "DeleteAddress",
    }
