"""The watch suite's writer: CreateUser at a steady rate, open loop, in its own process.

Run as `python -m bench.paced_writer --target HOST:PORT --rate 500 --start-at EPOCH
--seconds 12 --tag TAG`; prints one JSON object. Open loop: call n is sent at
start + n / rate whether or not the calls before it have returned, so a server that slows
down under its watchers shows as write latency, not as a lower rate of changes (which
would flatter the watchers' latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass

import grpc
from users.v1 import resources_pb2, user_service_pb2, user_service_pb2_grpc

from bench.measurement import percentile, run_event_loop

CALL_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class WriterResult:
    sent: int
    ok: int
    errors: int
    first_error: str
    seconds: float  # the schedule's length: sent / rate
    p50_ms: float  # from each call's scheduled time to its answer
    p99_ms: float
    max_late_ms: float  # how far behind its schedule the writer itself sent a call
    cpu_seconds: float
    finished_at: float  # wall clock when the last call returned

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> WriterResult:
        return cls(**json.loads(raw))


async def _run(target: str, rate: float, start_at: float, seconds: float, tag: str) -> None:
    latencies: list[float] = []
    errors = 0
    first_error = ""
    late = 0.0
    total = round(rate * seconds)
    async with grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        stub = user_service_pb2_grpc.UserServiceStub(channel)

        async def create(n: int, due: float) -> None:
            nonlocal errors, first_error
            user = resources_pb2.User(name=f"Watch {n}", email=f"watch-{tag}-{n}@bench.example.com")
            try:
                await stub.CreateUser(
                    user_service_pb2.CreateUserRequest(user=user), timeout=CALL_TIMEOUT_SECONDS
                )
            except grpc.aio.AioRpcError as error:
                errors += 1
                first_error = first_error or f"{error.code().name}: {error.details()}"[:300]
                return
            latencies.append(time.monotonic() - due)

        cpu_started = time.process_time()
        # The suite starts every watcher before this; the shared wall-clock start lets it
        # open the latency window where the writer's warm-up ends.
        await asyncio.sleep(max(0.0, start_at - time.time()))
        began = time.monotonic()
        calls = []
        for n in range(total):
            due = began + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late = max(late, -delay)
            calls.append(asyncio.create_task(create(n, due)))
        await asyncio.gather(*calls)
        finished_at = time.time()
    latencies.sort()
    result = WriterResult(
        sent=total,
        ok=len(latencies),
        errors=errors,
        first_error=first_error,
        seconds=total / rate,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_late_ms=late * 1000,
        cpu_seconds=time.process_time() - cpu_started,
        finished_at=finished_at,
    )
    print(result.to_json(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.paced_writer")
    parser.add_argument("--target", required=True, help="HOST:PORT")
    parser.add_argument("--rate", type=float, required=True, help="CreateUser calls a second")
    parser.add_argument("--start-at", type=float, required=True, help="wall-clock start, epoch s")
    parser.add_argument("--seconds", type=float, required=True, help="how long to write")
    parser.add_argument("--tag", required=True, help="makes this run's emails unique")
    args = parser.parse_args()
    run_event_loop(_run(args.target, args.rate, args.start_at, args.seconds, args.tag))


if __name__ == "__main__":
    main()
