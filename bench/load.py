"""The load generator: a grpc.aio client in its own process, driving one RPC in a closed loop.

Run as `python -m bench.load --target HOST:PORT ...`; prints one Measurement as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import random
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from users.v1 import resources_pb2, user_service_pb2, user_service_pb2_grpc

from bench.measurement import (
    LoadShape,
    Measurement,
    Operation,
    measure_in_child,
    run_closed_loop,
    run_event_loop,
)

CALL_TIMEOUT_SECONDS = 30.0


async def measure_service(target: str, shape: LoadShape, max_id: int) -> Measurement:
    """Parent side: runs the load generator in a separate process against `target`."""
    return await measure_in_child(
        "bench.load", [f"--target={target}", f"--max-id={max_id}", *shape.flags()]
    )


def _caller(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, operation: Operation, max_id: int
) -> Callable[[int], Coroutine[Any, Any, None]]:
    if operation is Operation.GET_USER:

        async def get_user(_worker: int) -> None:
            # Default view (FULL), as a client that sets nothing gets.
            await stub.GetUser(
                user_service_pb2.GetUserRequest(id=random.randint(1, max_id)),
                timeout=CALL_TIMEOUT_SECONDS,
            )

        return get_user

    # Unique per process and call, so no CreateUser fails on a taken email.
    tag = uuid.uuid4().hex[:8]
    serial = itertools.count()

    async def create_user(_worker: int) -> None:
        user = resources_pb2.User(
            name="Bench User", email=f"load-{tag}-{next(serial)}@bench.example.com"
        )
        await stub.CreateUser(
            user_service_pb2.CreateUserRequest(user=user), timeout=CALL_TIMEOUT_SECONDS
        )

    return create_user


async def _run(target: str, shape: LoadShape, max_id: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        stub = user_service_pb2_grpc.UserServiceStub(channel)
        measured = await run_closed_loop(_caller(stub, shape.operation, max_id), shape)
    print(measured.to_json(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--target", required=True, help="HOST:PORT of the service")
    parser.add_argument("--max-id", type=int, required=True, help="GetUser picks ids in 1..max")
    parser.add_argument("--operation", type=Operation, choices=list(Operation), required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    args = parser.parse_args()
    shape = LoadShape(args.operation, args.concurrency, args.warmup, args.duration)
    run_event_loop(_run(args.target, shape, args.max_id))


if __name__ == "__main__":
    main()
