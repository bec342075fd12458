"""What tracing costs GetUser: servers with tracing off, on with every call sampled, and
on with 1 call in 100 sampled (spans sent over OTLP/gRPC to a receiver in this process,
which counts and drops them), and optionally an older commit's, all up at once on one
seeded PostgreSQL database, loaded in turn by the anchors' Go generator (each side first
in turn), the median of each side's rounds.

    python -m bench.tracing_cost [--before COMMIT] [--rounds 3] [--duration 4]

A cheap same-run comparison for a busy machine; the anchors' own GetUser ratio with
tracing on waits for a quiet one (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

from bench import database, grpcload, source_tree
from bench.measurement import REPO, run_event_loop, say
from bench.server_process import ServerProcess

DATABASE = "users_bench_tracing"
USERS = 10_000
CONCURRENCY = 64


class Sink(otlp_grpc.TraceServiceServicer):
    """An OTLP receiver that counts the spans it is sent."""

    def __init__(self) -> None:
        self.spans = 0

    async def Export(
        self, request: otlp.ExportTraceServiceRequest, context: Any
    ) -> otlp.ExportTraceServiceResponse:
        self.spans += sum(
            len(scope.spans)
            for resource in request.resource_spans
            for scope in resource.scope_spans
        )
        return otlp.ExportTraceServiceResponse()


async def main(args: argparse.Namespace) -> None:
    url = database.service_url(args.database_url, DATABASE)
    await database.recreate(args.database_url, DATABASE)
    await database.migrate(url)
    await database.seed(url, USERS)
    binary = grpcload.build(grpcload.DEFAULT_ANCHORS)
    sink, receiver = Sink(), grpc.aio.server()
    otlp_grpc.add_TraceServiceServicer_to_server(sink, receiver)  # type: ignore[no-untyped-call]
    receiver_port = receiver.add_insecure_port("127.0.0.1:0")
    await receiver.start()
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver_port}"}
    one_in_100 = {
        **endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
    }
    sides: dict[str, tuple[Path, dict[str, str] | None]] = {}
    rates: dict[str, list[float]] = {}
    p99s: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    try:
        async with contextlib.AsyncExitStack() as stack:
            if args.before:
                tree = await stack.enter_async_context(source_tree.worktree(args.before))
                sides[f"{source_tree.short_commit(args.before)}, before tracing"] = (tree, None)
            sides["tracing off"] = (REPO, None)
            sides["tracing on, every call sampled"] = (REPO, endpoint)
            sides["tracing on, 1 call in 100 sampled"] = (REPO, one_in_100)
            servers = {
                side: await stack.enter_async_context(ServerProcess(url, tree=tree, env=env))
                for side, (tree, env) in sides.items()
            }
            order = list(servers)
            for round_number in range(args.rounds):
                # Each side goes first in turn: a drift of the machine spreads over all.
                turn = order[round_number % len(order) :] + order[: round_number % len(order)]
                for side in turn:
                    load = grpcload.GetLoad(
                        target=servers[side].target,
                        concurrency=CONCURRENCY,
                        connections=1,
                        deadline=2.0,
                        warmup=args.warmup,
                        duration=args.duration,
                        max_id=USERS,
                    )
                    cpu = servers[side].cpu_seconds()
                    result = await grpcload.finish(await grpcload.start(binary, load), load)
                    cpu = servers[side].cpu_seconds() - cpu
                    # The CPU of the warm-up too, over the calls it would have made at the
                    # measured rate.
                    calls = result.per_second * (args.warmup + args.duration)
                    rates.setdefault(side, []).append(result.per_second)
                    p99s.setdefault(side, []).append(result.p99_ms)
                    cpus.setdefault(side, []).append(cpu * 1000 / calls if calls else 0.0)
                    say(
                        f"round {round_number + 1} {side}: {result.per_second:,.0f} "
                        f"calls/s, p99 {result.p99_ms:.2f} ms, {cpus[side][-1]:.3f} ms CPU "
                        f"a call, {result.failed} failed"
                    )
    finally:
        await receiver.stop(None)
    base = statistics.median(rates["tracing off"])
    print("| server | GetUser calls/s | / tracing off | p99 ms | server CPU ms/call |")
    print("|---|--:|--:|--:|--:|")
    for side, side_rates in rates.items():
        rate = statistics.median(side_rates)
        print(
            f"| {side} | {rate:,.0f} | {rate / base:.2f} | {statistics.median(p99s[side]):.1f} "
            f"| {statistics.median(cpus[side]):.3f} |"
        )
    print(f"spans received: {sink.spans:,}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_cost", description=__doc__)
    parser.add_argument(
        "--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument(
        "--before", default="", help="also run this commit's service (e.g. one before tracing)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    return parser


if __name__ == "__main__":
    run_event_loop(main(_parser().parse_args()))
