"""The issue-7 ceiling: users.v1 by hand on grpc.aio + asyncpg, no validation, ORM or metrics.

`python -m bench.bare_server --port N --dsn postgresql://...`; GetUser is one query (plus one
for addresses in the FULL view, as a hand-written server would do it), CreateUser one
INSERT ... RETURNING, StreamUsers one keyset read per batch.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from users.v1 import resources_pb2 as pb
from users.v1 import user_service_pb2 as rpc
from users.v1 import user_service_pb2_grpc as rpc_grpc

from bench.measurement import run_event_loop

USER = "SELECT id, name, email, create_time, update_time, version FROM users WHERE id = $1"
ADDRESSES = (
    "SELECT id, user_id, email, create_time, update_time, version FROM addresses "
    "WHERE user_id = $1 ORDER BY id"
)
INSERT = (
    "INSERT INTO users (name, email, email_domain, create_time, update_time, version) "
    "VALUES ($1, $2, $3, now(), now(), 1) RETURNING id, create_time, update_time"
)
BY_EMAIL = "SELECT id, name, email, create_time, update_time, version FROM users WHERE email = $1"
BATCH = (
    "SELECT id, name, email, create_time, update_time, version FROM users "
    "WHERE id > $1 ORDER BY id LIMIT $2"
)
Ctx = grpc.aio.ServicerContext[Any, Any]


def stamp(moment: Any) -> Timestamp:
    return Timestamp(seconds=int(moment.timestamp()), nanos=moment.microsecond * 1000)


def user_of(row: asyncpg.Record) -> pb.User:
    return pb.User(
        id=row[0],
        name=row[1],
        email=row[2],
        create_time=stamp(row[3]),
        update_time=stamp(row[4]),
        etag=f"u{row[0]}.{row[5]}",
    )


class BareUsers(rpc_grpc.UserServiceServicer):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def GetUser(self, request: rpc.GetUserRequest, context: Ctx) -> pb.User:
        row = await self._pool.fetchrow(USER, request.id)
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"user {request.id} not found")
        user = user_of(row)
        if request.view == pb.USER_VIEW_FULL:
            for a in await self._pool.fetch(ADDRESSES, request.id):
                user.addresses.add(id=a[0], user_id=a[1], email=a[2], etag=f"a{a[0]}.{a[5]}")
        return user

    async def CreateUser(self, request: rpc.CreateUserRequest, context: Ctx) -> pb.User:
        email = request.user.email.lower()
        row = await self._pool.fetchrow(INSERT, request.user.name, email, email.rpartition("@")[2])
        return pb.User(
            id=row[0],
            name=request.user.name,
            email=email,
            create_time=stamp(row[1]),
            update_time=stamp(row[2]),
            etag=f"u{row[0]}.1",
        )

    async def ListUsers(self, request: rpc.ListUsersRequest, context: Ctx) -> rpc.ListUsersResponse:
        # Only the listing suite's email lookup: one exact email, no paging.
        rows = await self._pool.fetch(BY_EMAIL, request.email.lower())
        return rpc.ListUsersResponse(users=[user_of(row) for row in rows])

    async def StreamUsers(
        self, request: rpc.StreamUsersRequest, context: Ctx
    ) -> AsyncIterator[rpc.StreamUsersResponse]:
        after, size = request.after_id, request.batch_size or 500
        while rows := await self._pool.fetch(BATCH, after, size):
            yield rpc.StreamUsersResponse(users=[user_of(row) for row in rows])
            after = rows[-1][0]


async def serve(port: int, dsn: str) -> None:
    # As the service's pool: 10 connections, 10 more under load.
    async with asyncpg.create_pool(dsn, min_size=10, max_size=20) as pool:
        server = grpc.aio.server()
        # The other methods answer UNIMPLEMENTED, from the generated base class.
        servicer = BareUsers(pool)  # type: ignore[abstract]
        rpc_grpc.add_UserServiceServicer_to_server(servicer, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True, help="postgresql://... (asyncpg's form)")
    args = parser.parse_args()
    run_event_loop(serve(args.port, args.dsn))


if __name__ == "__main__":
    main()
