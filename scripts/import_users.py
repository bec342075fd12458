"""Load users from a JSON-lines file with users.v1 ImportUsers, all or nothing.

Each line is one user:
    {"name": "Ana Lima", "email": "ana@example.com", "addresses": ["home@example.org"],
     "request_id": "optional, e.g. a UUID: a retried import then skips what it created"}

    python scripts/import_users.py users.jsonl --target localhost:50051
    python scripts/import_users.py - < users.jsonl

The file is read as it is sent, so a million lines need no more memory than one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING

import grpc
from users.v1 import resources_pb2, user_service_pb2, user_service_pb2_grpc

if TYPE_CHECKING:
    UserStub = user_service_pb2_grpc.UserServiceAsyncStub
else:
    UserStub = user_service_pb2_grpc.UserServiceStub

ROWS_PER_MESSAGE = 1000  # API.md: messages of up to 1000 rows


class BadLineError(ValueError):
    """A line that is not a user; the message names the line."""


def row_of(line: str, number: int) -> user_service_pb2.CreateUserRequest:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise BadLineError(f"line {number}: not JSON ({error.msg})") from None
    if not isinstance(item, dict):
        raise BadLineError(f"line {number}: expected an object with name and email")
    addresses = item.get("addresses", [])
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise BadLineError(f"line {number}: addresses must be a list of emails")
    fields = {key: item.get(key, "") for key in ("name", "email", "request_id")}
    if not all(isinstance(value, str) for value in fields.values()):
        raise BadLineError(f"line {number}: name, email and request_id must be strings")
    return user_service_pb2.CreateUserRequest(
        user=resources_pb2.User(
            name=fields["name"],
            email=fields["email"],
            addresses=[resources_pb2.Address(email=a) for a in addresses],
        ),
        request_id=fields["request_id"],
    )


def rows_of(lines: IO[str]) -> Iterator[user_service_pb2.CreateUserRequest]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield row_of(line, number)


def messages_of(
    rows: Iterator[user_service_pb2.CreateUserRequest],
) -> Iterator[user_service_pb2.ImportUsersRequest]:
    chunk: list[user_service_pb2.CreateUserRequest] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == ROWS_PER_MESSAGE:
            yield user_service_pb2.ImportUsersRequest(requests=chunk)
            chunk = []
    if chunk:
        yield user_service_pb2.ImportUsersRequest(requests=chunk)


async def import_file(target: str, lines: IO[str], token: str) -> int:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.insecure_channel(target) as channel:
        call = UserStub(channel).ImportUsers(None, metadata=metadata)
        try:
            for message in messages_of(rows_of(lines)):
                await call.write(message)
            await call.done_writing()
        except BadLineError:
            # Cancelled, not ended: an ended stream would import the lines before this one.
            call.cancel()
            raise
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the server ended the call early (a bad row); awaiting it gives its status
        response = await call
    return int(response.created_count)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="JSON-lines file of users, or - for standard input")
    parser.add_argument("--target", default="localhost:50051", help="server host:port")
    parser.add_argument("--token", default="", help="bearer token, when auth is on")
    args = parser.parse_args(argv)
    try:
        if args.file == "-":
            created = asyncio.run(import_file(args.target, sys.stdin, args.token))
        else:
            with open(args.file, encoding="utf-8") as lines:
                created = asyncio.run(import_file(args.target, lines, args.token))
    except BadLineError as error:
        sys.stderr.write(f"import_users: {error}; nothing was imported\n")
        return 2
    except grpc.aio.AioRpcError as error:
        sys.stderr.write(f"import_users: {error.code().name}: {error.details()}\n")
        return 1
    sys.stdout.write(f"created {created} users\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
