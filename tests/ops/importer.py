"""An ImportUsers client that streams valid rows without end, until it is killed.

    python -m tests.ops.importer TARGET

Every message carries 1000 rows, each with addresses, so staging writes both of its
tables. A line on stdout after each message the channel took lets the test see it
stream. The stream is never half-closed: nothing of it may land.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator

import grpc
from users.v1 import resources_pb2, user_service_pb2, user_service_pb2_grpc

ROWS_PER_MESSAGE = 1000
ADDRESSES_PER_ROW = 3
DOMAIN = "abandoned.test"


def message() -> user_service_pb2.ImportUsersRequest:
    rows = []
    for _ in range(ROWS_PER_MESSAGE):
        key = uuid.uuid4().hex
        user = resources_pb2.User(name="Abandoned", email=f"{key}@{DOMAIN}")
        for n in range(ADDRESSES_PER_ROW):
            user.addresses.add(email=f"a{n}-{key}@{DOMAIN}")
        rows.append(user_service_pb2.CreateUserRequest(user=user))
    return user_service_pb2.ImportUsersRequest(requests=rows)


async def messages() -> AsyncIterator[user_service_pb2.ImportUsersRequest]:
    while True:
        yield message()
        print("sent", flush=True)  # read by the test


async def stream(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = user_service_pb2_grpc.UserServiceStub(channel)
        await stub.ImportUsers(messages())


if __name__ == "__main__":
    asyncio.run(stream(sys.argv[1]))
