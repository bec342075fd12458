"""`python -m bench --suite watch` (issue 13): the WatchUsers change stream on PostgreSQL.

Three parts, each on databases of its own, recreated every run:
1. change-to-delivery latency with 1, 100 and 1,000 watchers while CreateUser runs at
   500 calls/s (bench/watch_latency.py);
2. the write cost: CreateUser at 64 in flight, this code against the commit before
   WatchUsers, side by side (bench/write_cost.py);
3. catch-up: one watcher resuming 1,000,000 changes behind (bench/catch_up.py).
One markdown report: the environment, a table a part, then each target and whether it
was met.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bench import catch_up, database, watch_latency, write_cost
from bench.measurement import say
from bench.report import Environment

LATENCY_DATABASE = "users_bench_watch"


class Part(StrEnum):
    LATENCY = "latency"
    WRITE = "write"
    CATCH_UP = "catch-up"


@dataclass(frozen=True, slots=True)
class Args:
    parts: Sequence[Part]
    latency: watch_latency.LatencyArgs
    write: write_cost.WriteArgs
    catch_up: catch_up.CatchUpArgs


async def run(admin_url: str, args: Args) -> None:
    started = time.monotonic()
    environment = Environment.detect(await database.describe_server(admin_url))
    latency: list[watch_latency.LatencyRow] | None = None
    cost: write_cost.WriteCost | None = None
    behind: catch_up.CatchUp | None = None
    if Part.LATENCY in args.parts:
        url = database.service_url(admin_url, LATENCY_DATABASE)
        say(f"latency: recreating {LATENCY_DATABASE}")
        await database.recreate(admin_url, LATENCY_DATABASE)
        await database.migrate(url)
        latency = await watch_latency.measure(url, LATENCY_DATABASE, args.latency)
    if Part.WRITE in args.parts:
        cost = await write_cost.measure(admin_url, args.write)
    if Part.CATCH_UP in args.parts:
        behind = await catch_up.measure(admin_url, args.catch_up)
    print(_render(environment, args, latency, cost, behind))
    say(f"done in {time.monotonic() - started:.0f} s")


def _render(
    environment: Environment,
    args: Args,
    latency: list[watch_latency.LatencyRow] | None,
    cost: write_cost.WriteCost | None,
    behind: catch_up.CatchUp | None,
) -> str:
    lines = [*environment.header()]
    targets: list[str] = []
    problems: list[str] = []
    if latency is not None:
        lines += ["", *watch_latency.render(latency, args.latency)]
        targets.append(watch_latency.verdict(latency))
        problems += watch_latency.problems(latency)
    if cost is not None:
        lines += ["", *write_cost.render(cost, args.write)]
        targets.append(write_cost.verdict(cost))
        problems += write_cost.problems(cost)
    if behind is not None:
        lines += ["", *catch_up.render(behind)]
        targets.append(catch_up.verdict(behind))
        problems += catch_up.problems(behind)
    lines += ["", "Targets (issue 13):", *targets]
    if problems:
        lines += ["", "Problems:", *problems]
    return "\n".join(lines)
