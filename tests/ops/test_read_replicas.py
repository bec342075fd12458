"""--read-database-url against a real streaming replica (issue 15, item 2): ListUsers,
ListAddresses and StreamUsers read there, GetUser and writes stay on the primary; a
replica stopped mid-listing or lagging past --max-replica-lag is skipped for the primary
without an error, which the metrics and the log say; a page token works on both."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from users.v1 import address_service_pb2, resources_pb2, user_service_pb2

from tests.ops.cluster import PrivateCluster, PrivateReplica
from tests.ops.test_metrics import scrape
from tests.process.server_process import ServerProcess, free_port
from tests.rpc import AddressStub, UserStub, fresh_email

DOMAIN = "replica.example"
MAX_LAG_SECONDS = 1.0
WAIT_SECONDS = 20.0
# What the service's reads look like in pg_stat_activity.query (the last statement of each
# of its sessions on that server).
LISTING = "SELECT %ORDER BY%"


def replica_usable(metrics_port: int) -> float | None:
    samples = scrape(metrics_port)
    found = [v for (n, _), v in samples.items() if n == "users_db_replica_usable"]
    return found[0] if found else None


async def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"not within {WAIT_SECONDS} s: {what}"
        await asyncio.sleep(0.2)


def sessions_reading(cluster: PrivateCluster | PrivateReplica) -> int:
    """The service's sessions on `cluster` whose last statement was a listing."""
    statement = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'postgres' "
        f"AND pid <> pg_backend_pid() AND query LIKE '{LISTING}'"
    )
    return int(cluster.sql(statement)) if isinstance(cluster, PrivateReplica) else 0


async def list_page(
    stub: UserStub, token: str = "", email: str = ""
) -> user_service_pb2.ListUsersResponse:
    request = user_service_pb2.ListUsersRequest(
        page_size=5, page_token=token, email_domain=DOMAIN, email=email, order_by="id"
    )
    return await stub.ListUsers(request, timeout=10)


async def stream_all(stub: UserStub) -> list[int]:
    request = user_service_pb2.StreamUsersRequest(email_domain=DOMAIN, batch_size=4)
    return [u.id async for r in stub.StreamUsers(request, timeout=10) for u in r.users]


@pytest.mark.slow
async def test_lagging_reads_go_to_the_replica_and_fall_back_to_the_primary(
    tmp_path: Path,
) -> None:
    with PrivateCluster() as primary, PrivateReplica(primary) as replica:
        port, metrics_port = free_port(), free_port()
        args = [
            *("--port", str(port), "--database-url", primary.url),
            *("--read-database-url", replica.url_of("postgres")),
            *("--max-replica-lag", str(MAX_LAG_SECONDS), "--metrics-port", str(metrics_port)),
        ]
        with ServerProcess(tmp_path, args, port=port) as server:
            async with grpc.aio.insecure_channel(server.target) as channel:
                users, addresses = UserStub(channel), AddressStub(channel)
                made = [
                    await users.CreateUser(
                        user_service_pb2.CreateUserRequest(
                            user=resources_pb2.User(name=f"R{i}", email=fresh_email(DOMAIN))
                        ),
                        timeout=10,
                    )
                    for i in range(12)
                ]
                await eventually(
                    lambda: replica.sql("SELECT count(*) FROM users") == "12", "replicated"
                )
                await eventually(lambda: replica_usable(metrics_port) == 1, "replica in use")

                # Reads that may lag are served by the replica.
                first = await list_page(users)
                assert [u.id for u in first.users] == [u.id for u in made[:5]]
                assert await stream_all(users) == [u.id for u in made]
                listed = await addresses.ListAddresses(
                    address_service_pb2.ListAddressesRequest(user_id=made[0].id), timeout=10
                )
                assert list(listed.addresses) == []
                assert sessions_reading(replica) > 0, "no listing reached the replica"

                # The replica stops mid-listing: the next page comes from the primary.
                await asyncio.to_thread(replica.stop)
                second = await list_page(users, first.next_page_token)
                assert [u.id for u in second.users] == [u.id for u in made[5:10]]
                assert await stream_all(users) == [u.id for u in made]
                await eventually(lambda: replica_usable(metrics_port) == 0, "replica skipped")

                # Back: it serves again; the primary's page token works there too.
                await asyncio.to_thread(replica.start)
                await eventually(lambda: replica_usable(metrics_port) == 1, "replica back")
                third = await list_page(users, second.next_page_token)
                assert [u.id for u in third.users] == [u.id for u in made[10:]]

                # Lag: replay paused, a write on the primary; past the bound, reads go to
                # the primary, which has the new user (the paused replica has not).
                replica.sql("SELECT pg_wal_replay_pause()")
                late = await users.CreateUser(
                    user_service_pb2.CreateUserRequest(
                        user=resources_pb2.User(name="Late", email=fresh_email(DOMAIN))
                    ),
                    timeout=10,
                )
                await eventually(lambda: replica_usable(metrics_port) == 0, "lag noticed")
                found = await list_page(users, email=late.email)
                assert [u.id for u in found.users] == [late.id]
                replica.sql("SELECT pg_wal_replay_resume()")
                await eventually(lambda: replica_usable(metrics_port) == 1, "caught up")
            assert server.terminate(10) == 0, server.stderr
        log = server.stderr
    assert "read replica" in log and "skipped for the primary: unreachable" in log, log
    assert "behind" in log, log
    assert "is in use again" in log, log
    assert "Traceback" not in log, log
