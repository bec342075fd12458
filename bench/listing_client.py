"""ListUsers load process: each case's page fetched back to back, one call in flight.

Run as `python -m bench.listing_client --target HOST:PORT`, the cases on stdin: a JSON
list of {"name", "request": ListUsersRequest fields}. Prints one JSON object, the
median and p90 milliseconds per case.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import grpc
from users.v1 import user_service_pb2, user_service_pb2_grpc

from bench.measurement import percentile, run_event_loop

CALL_TIMEOUT_SECONDS = 30.0


async def _run(target: str, cases: list[dict[str, Any]], repeats: int, warmup: int) -> None:
    results: dict[str, dict[str, float]] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        stub = user_service_pb2_grpc.UserServiceStub(channel)
        for case in cases:
            requests = [user_service_pb2.ListUsersRequest(**fields) for fields in case["requests"]]
            timings: list[float] = []
            returned = 0
            for turn in range(warmup + repeats):
                request = requests[turn % len(requests)]
                began = time.perf_counter()
                answer = await stub.ListUsers(request, timeout=CALL_TIMEOUT_SECONDS)
                if turn >= warmup:
                    timings.append(time.perf_counter() - began)
                    returned += len(answer.users)
            timings.sort()
            results[case["name"]] = {
                "p50_ms": percentile(timings, 0.5) * 1000,
                "p90_ms": percentile(timings, 0.9) * 1000,
                "users_per_page": returned / repeats,
            }
    print(json.dumps(results), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.listing_client")
    parser.add_argument("--target", required=True, help="HOST:PORT of the service")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    cases = json.loads(sys.stdin.read())
    run_event_loop(_run(args.target, cases, args.repeats, args.warmup))


if __name__ == "__main__":
    main()
