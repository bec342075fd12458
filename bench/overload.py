"""`python -m bench --suite overload` (issue 11, item 7): goodput, latency and memory as the
calls in flight grow past what the process can finish.

One server (its default --max-in-flight, or each value given) takes GetUser BASIC from the
Go load generator at 64, 256, 1,000 and 4,000 calls in flight over 4 connections with 2 s
deadlines, one run after another, so its RSS growth is over the whole climb. Then, for
comparison, a fresh server with admission off (--max-in-flight 1000000) takes 4,000.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from bench import database, grpcload
from bench.cpu import CpuWindow, wait_idle
from bench.measurement import BenchError, percentile, say
from bench.report import MIB, Environment
from bench.server_process import RssSampler, ServerProcess

OVERLOAD_DATABASE = "users_bench_overload"
CONCURRENCY = (64, 256, 1000, 4000)
CONNECTIONS = 4
DEADLINE_SECONDS = 2.0
ADMISSION_OFF = 1_000_000
SETTLE_SECONDS = 1.0  # after start and after each run, before RSS is read
GOODPUT_TARGET = 0.9  # goodput at the highest concurrency ÷ the best at any
P99_TARGET = 3.0  # p99 at the highest concurrency ÷ p99 at the lowest
RSS_TARGET_MIB = 30.0


@dataclass(frozen=True, slots=True)
class Args:
    users: int
    warmup: float
    duration: float
    wait_idle: float
    concurrency: Sequence[int]
    limits: Sequence[int]  # --max-in-flight values; 0 is the service's default
    compare_admission_off: bool
    anchors: Path


@dataclass(frozen=True, slots=True)
class Run:
    concurrency: int
    load: grpcload.LoadResult
    server_cpu_seconds: float  # inside the measured window only
    other_cores: float  # work of other processes on the machine, warm-up included
    peak_rss_bytes: int
    after_rss_bytes: int
    # What the call layer logged for calls that ended inside the window: the calls that
    # reached it (grpc itself cancels others before the service sees them).
    logged: CallLog

    def server_cores(self) -> float:
        return self.server_cpu_seconds / self.load.seconds if self.load.seconds else 0.0

    def server_us_per_call(self) -> float:
        calls = self.load.ok + self.load.failed
        return self.server_cpu_seconds * 1e6 / calls if calls else 0.0

    def client_cores(self, warmup: float) -> float:
        wall = warmup + self.load.seconds
        return self.load.client_cpu_seconds / wall if wall else 0.0


@dataclass(slots=True)
class Series:
    """One server process and the runs it took, lowest concurrency first."""

    limit: int
    rss_before_bytes: int = 0
    runs: list[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.limit == 0:
            return "default --max-in-flight"
        if self.limit >= ADMISSION_OFF:
            return f"admission off (--max-in-flight {self.limit})"
        return f"--max-in-flight {self.limit}"

    def flags(self) -> tuple[str, ...]:
        # Every call's line: the suite counts outcomes from the log (calls_logged).
        limit = (f"--max-in-flight={self.limit}",) if self.limit else ()
        return ("--access-log=all", *limit)

    def rss_growth_mib(self) -> float:
        peak = max((run.peak_rss_bytes for run in self.runs), default=0)
        return (peak - self.rss_before_bytes) / MIB


async def run(admin_url: str, args: Args) -> None:
    started = time.monotonic()
    binary = await asyncio.to_thread(grpcload.build, args.anchors)
    url = database.service_url(admin_url, OVERLOAD_DATABASE)
    say(f"recreating {OVERLOAD_DATABASE}, seeding {args.users:,} users")
    await database.recreate(admin_url, OVERLOAD_DATABASE)
    await database.migrate(url)
    await database.seed(url, args.users)
    environment = Environment.detect(await database.describe_server(url))
    everything = [
        await _series(url, binary, limit, args.concurrency, args) for limit in args.limits
    ]
    if args.compare_admission_off:
        top = (max(args.concurrency),)
        everything.append(await _series(url, binary, ADMISSION_OFF, top, args))
    print(_render(environment, everything, args))
    say(f"done in {time.monotonic() - started:.0f} s")


async def _series(
    url: str, binary: Path, limit: int, concurrency: Sequence[int], args: Args
) -> Series:
    series = Series(limit)
    async with ServerProcess(url, series.flags()) as server:
        await asyncio.sleep(SETTLE_SECONDS)
        series.rss_before_bytes = _rss(server.pid)
        for calls in concurrency:
            say(f"{series.label}: GetUser BASIC, {calls} in flight")
            try:
                series.runs.append(await _measure(server, binary, calls, args))
            except psutil.NoSuchProcess:
                raise BenchError(f"the service died under load:\n{server.log_tail()}") from None
    if server.exit_code != 0:
        say(f"{series.label}: the server exited {server.exit_code} on SIGTERM (expected 0)")
    return series


async def _measure(server: ServerProcess, binary: Path, calls: int, args: Args) -> Run:
    if args.wait_idle > 0:
        waited = await asyncio.to_thread(wait_idle, args.wait_idle)
        if waited >= args.wait_idle:
            say(f"the machine stayed busy for {waited:.0f} s; measuring anyway")
    load = grpcload.GetLoad(
        target=server.target,
        concurrency=calls,
        connections=CONNECTIONS,
        deadline=DEADLINE_SECONDS,
        warmup=args.warmup,
        duration=args.duration,
        max_id=args.users,
    )
    sampler = RssSampler(server.pid)
    sampler.start()
    try:
        with CpuWindow(OVERLOAD_DATABASE) as window:
            process = await grpcload.start(binary, load)
            # grpcload measures from the end of its warm-up: read the server's CPU there.
            await asyncio.sleep(args.warmup)
            cpu, opens = server.cpu_seconds(), datetime.now()
            await asyncio.sleep(args.duration)
            cpu, closes = server.cpu_seconds() - cpu, datetime.now()
            result = await grpcload.finish(process, load)
    finally:
        sampler.stop()
    await asyncio.sleep(SETTLE_SECONDS)
    return Run(
        concurrency=calls,
        load=result,
        server_cpu_seconds=cpu,
        other_cores=window.use.other_cores(),
        peak_rss_bytes=sampler.peak_bytes,
        after_rss_bytes=_rss(server.pid),
        logged=CallLog.read(server.log_text(), opens, closes),
    )


@dataclass(frozen=True, slots=True)
class CallLog:
    """The call layer's lines ("<time> INFO users.calls: /users.v1.UserService/GetUser OK
    1.234 ms peer=...") whose local time falls inside the window: codes, and the time OK
    calls spent inside the service (from the call layer to the reply, no queueing in grpc)."""

    codes: Counter[str]
    ok_ms: Sequence[float]  # ascending

    @classmethod
    def read(cls, text: str, opens: datetime, closes: datetime) -> CallLog:
        codes: Counter[str] = Counter()
        ok_ms = []
        marker = f" users.calls: {grpcload.GET_USER} "
        for line in text.splitlines():
            if marker not in line:
                continue
            try:
                logged = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            except ValueError:
                continue
            if opens <= logged <= closes:
                code, milliseconds, *_ = line.split(marker, 1)[1].split(" ")
                codes[code] += 1
                if code == "OK":
                    ok_ms.append(float(milliseconds))
        return cls(codes, sorted(ok_ms))

    def percentile_ms(self, fraction: float) -> float:
        return percentile(self.ok_ms, fraction)

    def render(self) -> str:
        return ", ".join(f"{code} {n:,}" for code, n in self.codes.most_common()) or "-"


def _rss(pid: int) -> int:
    root = psutil.Process(pid)
    return int(sum(p.memory_info().rss for p in (root, *root.children(recursive=True))))


def _render(env: Environment, everything: Sequence[Series], args: Args) -> str:
    lines = [
        *env.header(),
        f"- {args.users:,} users; GetUser view=BASIC, random ids; grpcload (grpc-go, "
        f"GOMAXPROCS=1, closed loop, a failed call is retried at once) over {CONNECTIONS} "
        f"connections, {DEADLINE_SECONDS:g} s deadlines; {args.warmup:g} s warm-up then "
        f"{args.duration:g} s measured per row; one server per series, rows in order.",
        "",
        "| server | in flight | OK/s | p50 ms | p99 ms | max ms | failed calls by code "
        "| call layer saw | in service p50 ms | in service p99 ms | server cores "
        "| server µs/call | client cores | RSS peak MiB | RSS after MiB | other cores |",
        "|---|--:|--:|--:|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for series in everything:
        lines.append(
            f"| {series.label} | (start) | | | | | | | | | | | | | "
            f"{series.rss_before_bytes / MIB:.0f} | |"
        )
        lines += [_row(series, r, args) for r in series.runs]
    reference = everything[0]
    lines.append("")
    for series in everything:
        lines += _targets(series, reference)
    lines += _failure_cost(everything)
    problems = [
        f"- {s.label} x{r.concurrency}: {r.load.mismatched} responses for another id"
        for s in everything
        for r in s.runs
        if r.load.mismatched
    ]
    problems += [
        f"- {s.label} x{r.concurrency}: other work used {r.other_cores:.2f} cores meanwhile"
        for s in everything
        for r in s.runs
        if r.other_cores > 0.2
    ]
    return "\n".join(lines + (["", "Problems:", *problems] if problems else []))


def _row(series: Series, r: Run, args: Args) -> str:
    failed = ", ".join(f"{code} {n:,}" for code, n in sorted(r.load.errors.items()) if n) or "-"
    return (
        f"| {series.label} | {r.concurrency:,} | {r.load.per_second:,.0f} | {r.load.p50_ms:.1f} "
        f"| {r.load.p99_ms:.1f} | {r.load.max_ms:.0f} | {failed} | {r.logged.render()} "
        f"| {r.logged.percentile_ms(0.5):.1f} | {r.logged.percentile_ms(0.99):.1f} "
        f"| {r.server_cores():.2f} "
        f"| {r.server_us_per_call():.0f} | {r.client_cores(args.warmup):.2f} "
        f"| {r.peak_rss_bytes / MIB:.0f} | {r.after_rss_bytes / MIB:.0f} | {r.other_cores:.2f} |"
    )


def _targets(series: Series, reference: Series) -> list[str]:
    """The issue's three lines; a series without the low rows borrows the first series'."""
    top = series.runs[-1]
    low = series.runs[0] if len(series.runs) > 1 else reference.runs[0]
    best = max(r.load.per_second for r in (*series.runs, *reference.runs))
    goodput = top.load.per_second / best if best else 0.0
    p99 = top.load.p99_ms / low.load.p99_ms if low.load.p99_ms else 0.0
    growth = series.rss_growth_mib()
    return [
        f"{series.label}:",
        f"- goodput x{top.concurrency} / best goodput: {top.load.per_second:,.0f} / {best:,.0f} "
        f"= {goodput:.2f} (≥ {GOODPUT_TARGET:g}) {_verdict(goodput >= GOODPUT_TARGET)}",
        f"- p99 x{top.concurrency} / p99 x{low.concurrency}: {top.load.p99_ms:.1f} / "
        f"{low.load.p99_ms:.1f} ms = {p99:.2f} (≤ {P99_TARGET:g}) "
        f"{_verdict(top.load.ok > 0 and p99 <= P99_TARGET)}",
        f"- RSS growth (peak of any row minus at start): {growth:+.0f} MiB "
        f"(≤ {RSS_TARGET_MIB:g}) {_verdict(growth <= RSS_TARGET_MIB)}",
    ]


def _verdict(met: bool) -> str:
    return "ok" if met else "MISS"


def _failure_cost(everything: Sequence[Series]) -> list[str]:
    """Server CPU a failed call costs, taking an OK call to cost what it did in the first
    row without failures (the series' own, else the first series'):
    (window CPU - OK calls * that) / failed calls."""
    lines = []
    for series in everything:
        base = next((r for r in (series.runs[0], everything[0].runs[0]) if _clean(r)), None)
        if base is None:
            continue
        per_ok = base.server_cpu_seconds / base.load.ok
        for r in series.runs:
            if r.load.failed * 4 < r.load.ok:
                continue  # too few for CPU-time noise to leave a meaningful share
            cost = (r.server_cpu_seconds - r.load.ok * per_ok) / r.load.failed
            refused = r.logged.codes.get("UNAVAILABLE", 0)
            reached = sum(r.logged.codes.values()) - r.logged.codes.get("OK", 0)
            lines.append(
                f"- {series.label} x{r.concurrency}: {r.load.failed / r.load.seconds:,.0f} "
                f"failed calls/s, ≈{cost * 1e6:.0f} µs of server CPU each (an OK GetUser: "
                f"{per_ok * 1e6:.0f} µs at x{base.concurrency}); of the failed calls, "
                f"{refused:,} were refused by the call layer (UNAVAILABLE), {reached - refused:,} "
                "ended otherwise inside it, the rest never reached it"
            )
    return ["", "What a failed call costs the server:", *lines] if lines else []


def _clean(run: Run) -> bool:
    return run.load.ok > 0 and not run.load.failed
