"""The watch suite's client processes: many WatchUsers streams, or one that catches up.

`python -m bench.watch_client watchers --target HOST:PORT --watchers N --channels K`
  opens N watches from now over K connections, prints `ready` once every one has its
  response headers (the watch is on), then reads two JSON lines on stdin:
  {"opens": EPOCH, "closes": EPOCH}, the window whose changes (by commit_time) count for
  latency; later {"expected": COUNT, "drain": SECONDS}, the changes the writer made: it
  waits up to `drain` seconds for every watcher to have them all, then prints one JSON
  object (WatchersResult) and ends.

`python -m bench.watch_client catch-up --target HOST:PORT --resume-token T --count N`
  reads one stream from the token until N changes came; prints one JSON object.

Latency is the receive time minus the change's commit_time, both read from this
machine's wall clock (the service stamps commit_time with it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import grpc
from users.v1 import user_service_pb2, user_service_pb2_grpc

from bench.histogram import Histogram
from bench.measurement import run_event_loop

START_TIMEOUT_SECONDS = 120.0
# Separate connections, not one shared subchannel: grpc would otherwise put every
# channel of this process with the same target and options on one TCP connection.
CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)


def position_of(resume_token: str) -> int:
    """The position a resume token names, read without checking its MAC: the layout is
    service/api/resume_tokens.py's (version byte, then 8 bytes big-endian). A real client
    treats tokens as opaque; the bench reads them to check order."""
    return int.from_bytes(base64.urlsafe_b64decode(resume_token + "==")[1:9], "big")


@dataclass(frozen=True, slots=True)
class WatchersResult:
    watchers: int
    min_received: int  # by the watcher that got the fewest changes
    max_received: int
    complete: int  # watchers that got every change the writer made
    out_of_order: int  # changes whose position was not the one after the last
    errors: int  # streams that ended with an error
    first_error: str
    first_half: dict[str, object]  # Histogram of the window's first half (by commit_time)
    second_half: dict[str, object]
    window_deliveries: int  # changes received by all watchers inside the window
    window_cpu_seconds: float  # this process's CPU inside the window
    completed_at: float | None  # wall clock when the last watcher had every change

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> WatchersResult:
        return cls(**json.loads(raw))


class Watchers:
    """Every watch of this process, and what they received."""

    def __init__(self, count: int) -> None:
        self.received = [0] * count
        self.out_of_order = 0
        self.errors = 0
        self.first_error = ""
        self.first_half = Histogram()
        self.second_half = Histogram()
        self.all_on = asyncio.Event()
        self.all_complete = asyncio.Event()
        self.completed_at: float | None = None
        self._on = 0
        self._complete = 0
        self._expected: int | None = None
        # The window by commit_time: (opens, middle, closes), once the suite sends it.
        self._window: tuple[float, float, float] | None = None
        self._snapshots: dict[str, tuple[float, int]] = {}

    async def watch(self, stub: user_service_pb2_grpc.UserServiceAsyncStub, index: int) -> None:
        on = False
        try:
            call = stub.WatchUsers(user_service_pb2.WatchUsersRequest())
            await call.initial_metadata()
            on = True
            self._mark_on()
            previous: int | None = None
            received = self.received
            async for change in call:
                now = time.time()
                count = received[index] = received[index] + 1
                position = position_of(change.resume_token)
                if previous is not None and position != previous + 1:
                    self.out_of_order += 1
                previous = position
                window = self._window
                if window is not None:
                    stamp = change.commit_time
                    committed = stamp.seconds + stamp.nanos / 1e9
                    if window[0] <= committed < window[2]:
                        half = self.first_half if committed < window[1] else self.second_half
                        half.add((now - committed) * 1000)
                if count == self._expected:
                    self._one_complete(now)
        except grpc.aio.AioRpcError as error:
            self.errors += 1
            self.first_error = self.first_error or f"{error.code().name}: {error.details()}"
            if not on:
                self._mark_on()  # counted as failed: the suite must not wait for it

    def open_window(self, opens: float, closes: float) -> None:
        self._window = (opens, (opens + closes) / 2, closes)
        loop = asyncio.get_running_loop()
        for name, at in (("opens", opens), ("closes", closes)):
            loop.call_later(max(0.0, at - time.time()), self._snapshot, name)

    def expect(self, changes: int) -> None:
        self._expected = changes
        now = time.time()
        for count in self.received:
            if count >= changes:
                self._one_complete(now)

    def result(self) -> WatchersResult:
        opened = self._snapshots.get("opens", (0.0, 0))
        closed = self._snapshots.get("closes", opened)
        return WatchersResult(
            watchers=len(self.received),
            min_received=min(self.received),
            max_received=max(self.received),
            complete=self._complete,
            out_of_order=self.out_of_order,
            errors=self.errors,
            first_error=self.first_error,
            first_half=self.first_half.to_json(),
            second_half=self.second_half.to_json(),
            window_deliveries=closed[1] - opened[1],
            window_cpu_seconds=closed[0] - opened[0],
            completed_at=self.completed_at,
        )

    def _mark_on(self) -> None:
        self._on += 1
        if self._on == len(self.received):
            self.all_on.set()

    def _one_complete(self, now: float) -> None:
        self._complete += 1
        if self._complete == len(self.received):
            self.completed_at = now
            self.all_complete.set()

    def _snapshot(self, name: str) -> None:
        self._snapshots[name] = (time.process_time(), sum(self.received))


async def _read_line() -> dict[str, Any]:
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        raise SystemExit("watch_client: stdin closed before the suite's next instruction")
    fields: dict[str, Any] = json.loads(line)
    return fields


async def _watchers(target: str, count: int, channels: int) -> None:
    state = Watchers(count)
    opened = [grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(channels)]
    stubs = [user_service_pb2_grpc.UserServiceStub(channel) for channel in opened]
    tasks = [asyncio.create_task(state.watch(stubs[i % channels], i)) for i in range(count)]
    try:
        await asyncio.wait_for(state.all_on.wait(), START_TIMEOUT_SECONDS)
        print("ready", flush=True)
        window = await _read_line()
        state.open_window(float(window["opens"]), float(window["closes"]))
        finish = await _read_line()
        state.expect(int(finish["expected"]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.all_complete.wait(), float(finish["drain"]))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in opened:
            await channel.close(None)
    print(state.result().to_json(), flush=True)


@dataclass(frozen=True, slots=True)
class CatchUpResult:
    received: int
    out_of_order: int
    last_position: int
    seconds: float  # from the call to the last change wanted
    first_change_ms: float  # from the call to the first change
    cpu_seconds: float
    error: str

    @property
    def per_second(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> CatchUpResult:
        return cls(**json.loads(raw))


async def _catch_up(target: str, resume_token: str, count: int, limit: float) -> None:
    received = out_of_order = 0
    previous = position_of(resume_token)
    first = last = 0.0
    error = ""
    async with grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        stub = user_service_pb2_grpc.UserServiceStub(channel)
        cpu_started = time.process_time()
        began = time.perf_counter()
        call = stub.WatchUsers(user_service_pb2.WatchUsersRequest(resume_token=resume_token))
        try:
            async with asyncio.timeout(limit):
                async for change in call:
                    position = position_of(change.resume_token)
                    if position != previous + 1:
                        out_of_order += 1
                    previous = position
                    received += 1
                    if received == 1:
                        first = time.perf_counter()
                    if received >= count:
                        break
        except TimeoutError:
            error = f"stopped after {limit:g} s"
        except grpc.aio.AioRpcError as failed:
            error = f"{failed.code().name}: {failed.details()}"
        last = time.perf_counter()
        cpu = time.process_time() - cpu_started
        call.cancel()
    result = CatchUpResult(
        received=received,
        out_of_order=out_of_order,
        last_position=previous,
        seconds=last - began,
        first_change_ms=(first - began) * 1000 if received else 0.0,
        cpu_seconds=cpu,
        error=error,
    )
    print(result.to_json(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.watch_client")
    modes = parser.add_subparsers(dest="mode", required=True)
    watchers = modes.add_parser("watchers", help="N watches from now, for latency")
    watchers.add_argument("--target", required=True, help="HOST:PORT")
    watchers.add_argument("--watchers", type=int, required=True)
    watchers.add_argument("--channels", type=int, required=True, help="HTTP/2 connections")
    catch_up = modes.add_parser("catch-up", help="one watch resuming from a token")
    catch_up.add_argument("--target", required=True, help="HOST:PORT")
    catch_up.add_argument("--resume-token", required=True)
    catch_up.add_argument("--count", type=int, required=True, help="changes to read")
    catch_up.add_argument("--timeout", type=float, default=600.0, help="seconds at most")
    args = parser.parse_args()
    if args.mode == "watchers":
        run_event_loop(_watchers(args.target, args.watchers, args.channels))
    else:
        run_event_loop(_catch_up(args.target, args.resume_token, args.count, args.timeout))


if __name__ == "__main__":
    main()
