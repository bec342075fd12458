"""Bulk load process: one StreamUsers, ImportUsers or a run of BatchCreateUsers calls.

Run as `python -m bench.bulk_client --target HOST:PORT <stream|import|batch> ...`; prints
one JSON object: rows, seconds, and the process's own CPU seconds. Messages to send are
built before the clock starts, so the client's protobuf work is not counted.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import AsyncIterator

import grpc
from users.v1 import resources_pb2, user_service_pb2, user_service_pb2_grpc

from bench.measurement import run_event_loop

VIEWS = {"basic": resources_pb2.USER_VIEW_BASIC, "full": resources_pb2.USER_VIEW_FULL}
IMPORT_MESSAGE_ROWS = 1000  # API.md: at most 1000 rows a message


def import_email(prefix: str, index: int) -> str:
    return f"{prefix}{index}@import.example.com"


def create_requests(
    prefix: str, start: int, count: int
) -> list[user_service_pb2.CreateUserRequest]:
    return [
        user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(name=f"Loaded User {i}", email=import_email(prefix, i))
        )
        for i in range(start, start + count)
    ]


async def _stream(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, args: argparse.Namespace
) -> int:
    request = user_service_pb2.StreamUsersRequest(view=VIEWS[args.view], batch_size=args.batch_size)
    rows = 0
    async for message in stub.StreamUsers(request):
        rows += len(message.users)
    return rows


async def _import(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, args: argparse.Namespace
) -> None:
    messages = [
        user_service_pb2.ImportUsersRequest(
            requests=create_requests(
                args.prefix, start, min(IMPORT_MESSAGE_ROWS, args.count - start)
            )
        )
        for start in range(0, args.count, IMPORT_MESSAGE_ROWS)
    ]

    async def sent() -> AsyncIterator[user_service_pb2.ImportUsersRequest]:
        for message in messages:
            yield message

    began = time.perf_counter()
    answer = await stub.ImportUsers(sent())
    _report(answer.created_count, time.perf_counter() - began)


async def _batch(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, args: argparse.Namespace
) -> None:
    batches = [
        user_service_pb2.BatchCreateUsersRequest(
            requests=create_requests(args.prefix, n * args.count, args.count)
        )
        for n in range(args.repeats)
    ]
    began = time.perf_counter()
    created = 0
    for batch in batches:
        created += len((await stub.BatchCreateUsers(batch)).users)
    _report(created, time.perf_counter() - began)


def _report(rows: int, seconds: float) -> None:
    print(
        json.dumps({"rows": rows, "seconds": seconds, "cpu_seconds": time.process_time()}),
        flush=True,
    )


async def _run(args: argparse.Namespace) -> None:
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(args.target, options=options) as channel:
        await channel.channel_ready()
        stub = user_service_pb2_grpc.UserServiceStub(channel)
        if args.command == "stream":
            began = time.perf_counter()
            rows = await _stream(stub, args)
            _report(rows, time.perf_counter() - began)
        elif args.command == "import":
            await _import(stub, args)
        else:
            await _batch(stub, args)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk_client")
    parser.add_argument("--target", required=True, help="HOST:PORT of the service")
    commands = parser.add_subparsers(dest="command", required=True)
    stream = commands.add_parser("stream")
    stream.add_argument("--view", choices=tuple(VIEWS), default="basic")
    stream.add_argument("--batch-size", type=int, default=500)
    load = commands.add_parser("import")
    load.add_argument("--count", type=int, required=True)
    load.add_argument("--prefix", required=True)
    batch = commands.add_parser("batch")
    batch.add_argument("--count", type=int, default=1000)
    batch.add_argument("--repeats", type=int, default=10)
    batch.add_argument("--prefix", required=True)
    run_event_loop(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
