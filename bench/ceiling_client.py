"""The issue-7 load generator: GetUser (BASIC or FULL) or CreateUser in a closed loop.

Run as `python -m bench.ceiling_client --target HOST:PORT ...`; prints one Measurement as JSON.
Against the service and against bench/bare_server.py alike, so both see the same client.
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

from bench.measurement import LoadShape, Operation, run_closed_loop, run_event_loop

CALL_TIMEOUT_SECONDS = 30.0
VIEWS: dict[str, resources_pb2.UserView.ValueType] = {
    "basic": resources_pb2.USER_VIEW_BASIC,
    "full": resources_pb2.USER_VIEW_FULL,
}


def _caller(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    operation: Operation,
    view: resources_pb2.UserView.ValueType,
    max_id: int,
    token: str,
) -> Callable[[int], Coroutine[Any, Any, None]]:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    if operation is Operation.GET_USER:

        async def get_user(_worker: int) -> None:
            request = user_service_pb2.GetUserRequest(id=random.randint(1, max_id), view=view)
            await stub.GetUser(request, timeout=CALL_TIMEOUT_SECONDS, metadata=metadata)

        return get_user

    tag = uuid.uuid4().hex[:8]
    serial = itertools.count()

    async def create_user(_worker: int) -> None:
        user = resources_pb2.User(
            name="Bench User", email=f"ceiling-{tag}-{next(serial)}@bench.example.com"
        )
        request = user_service_pb2.CreateUserRequest(user=user)
        await stub.CreateUser(request, timeout=CALL_TIMEOUT_SECONDS, metadata=metadata)

    return create_user


async def _run(
    target: str,
    shape: LoadShape,
    view: resources_pb2.UserView.ValueType,
    max_id: int,
    token: str,
) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        stub = user_service_pb2_grpc.UserServiceStub(channel)
        measured = await run_closed_loop(_caller(stub, shape.operation, view, max_id, token), shape)
    print(measured.to_json(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling_client")
    parser.add_argument("--target", required=True, help="HOST:PORT")
    parser.add_argument("--max-id", type=int, required=True, help="GetUser picks ids in 1..max")
    parser.add_argument("--view", choices=sorted(VIEWS), default="basic")
    parser.add_argument("--operation", type=Operation, choices=list(Operation), required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--token", default="", help="sent as `authorization: Bearer <token>`")
    args = parser.parse_args()
    shape = LoadShape(args.operation, args.concurrency, args.warmup, args.duration)
    run_event_loop(_run(args.target, shape, VIEWS[args.view], args.max_id, args.token))


if __name__ == "__main__":
    main()
