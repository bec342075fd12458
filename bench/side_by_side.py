"""The unary hot path of two or more commits side by side, in one run: GetUser (BASIC) and
CreateUser at 64 calls in flight, each commit's server on a PostgreSQL database of its
own (migrated by that commit's code, seeded alike), all up at once and loaded in turn by
the anchors' Go generator, each side first in turn, the median of each side's rounds.

    python -m bench.side_by_side --commits 7f019fe,HEAD [--rounds 5] [--duration 5]

Issue 12's "within noise of before" and any hot-path change are measured this way: a
drift of the machine spreads over every side instead of landing on one.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench import database, grpcload, source_tree
from bench.measurement import REPO, run_event_loop, say
from bench.server_process import ServerProcess

USERS = 100_000
CONCURRENCY = 64


@dataclass
class Side:
    commit: str
    tree: Path
    rates: dict[str, list[float]] = field(default_factory=dict)
    cpus: dict[str, list[float]] = field(default_factory=dict)


async def main(args: argparse.Namespace) -> None:
    binary = grpcload.build(grpcload.DEFAULT_ANCHORS)
    operations = args.operations.split(",")
    async with contextlib.AsyncExitStack() as stack:
        sides: list[Side] = []
        servers: list[ServerProcess] = []
        for commit in args.commits.split(","):
            if commit == "WORKTREE":
                short, tree = "worktree", REPO
            else:
                short = source_tree.short_commit(commit)
                tree = await stack.enter_async_context(source_tree.worktree(commit))
            name = f"users_bench_sbs_{short}"
            url = database.service_url(args.database_url, name)
            await database.recreate(args.database_url, name)
            await database.migrate(url, tree)
            await database.seed(url, USERS)
            sides.append(Side(short, tree))
            servers.append(await stack.enter_async_context(ServerProcess(url, tree=tree)))
        for round_number in range(args.rounds):
            shift = round_number % len(sides)
            for index in [*range(shift, len(sides)), *range(shift)]:
                for operation in operations:
                    await _measure(binary, operation, sides[index], servers[index], args)
    _report(sides, operations)


async def _measure(
    binary: Path, operation: str, side: Side, server: ServerProcess, args: argparse.Namespace
) -> None:
    common = {
        "target": server.target,
        "concurrency": CONCURRENCY,
        "connections": 1,
        "deadline": 2.0,
        "warmup": args.warmup,
        "duration": args.duration,
    }
    load: grpcload.Load = (
        grpcload.GetLoad(**common, max_id=USERS)
        if operation == "get"
        else grpcload.CreateLoad(**common, tag=uuid.uuid4().hex[:8])
    )
    cpu = server.cpu_seconds()
    result = await grpcload.finish(await grpcload.start(binary, load), load)
    cpu = server.cpu_seconds() - cpu
    # The warm-up's CPU too, over the calls it would have made at the measured rate.
    calls = result.per_second * (args.warmup + args.duration)
    side.rates.setdefault(operation, []).append(result.per_second)
    side.cpus.setdefault(operation, []).append(cpu * 1e6 / calls if calls else 0.0)
    say(
        f"{side.commit} {operation}: {result.per_second:,.0f} calls/s, "
        f"{side.cpus[operation][-1]:.0f} µs CPU a call, {result.failed} failed"
    )


def _report(sides: list[Side], operations: list[str]) -> None:
    base = sides[0]
    print("| commit | operation | calls/s (median) | rounds | / first | server µs CPU a call |")
    print("|---|---|--:|---|--:|--:|")
    for side in sides:
        for operation in operations:
            rates = side.rates[operation]
            rate = statistics.median(rates)
            ratio = rate / statistics.median(base.rates[operation])
            rounds = ", ".join(f"{r:,.0f}" for r in rates)
            cpu = statistics.median(side.cpus[operation])
            print(
                f"| {side.commit} | {operation} | {rate:,.0f} | {rounds} | {ratio:.2f} "
                f"| {cpu:.0f} |"
            )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.side_by_side", description=__doc__)
    parser.add_argument(
        "--commits",
        default="7f019fe,HEAD",
        help="commits to compare, the first is the base; WORKTREE is the uncommitted tree",
    )
    parser.add_argument("--operations", default="get,create")
    parser.add_argument(
        "--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    return parser


if __name__ == "__main__":
    run_event_loop(main(_parser().parse_args()))
