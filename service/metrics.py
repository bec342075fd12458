"""Prometheus metrics: calls by method and code, latency, in-flight calls, pool usage,
readiness, the change feed's lag, users streamed, the process's CPU and memory.

One process serves /metrics itself. With `--workers N` the workers write to the files of
prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by their parent) and
the parent serves the sum of them.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from service.db.engine import pool_capacity

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Unary calls here take about a millisecond, below the default buckets' first bound.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_METHOD = ("grpc_service", "grpc_method")


class MethodMetrics:
    """The label children of one method, looked up once, so a call costs a few increments."""

    __slots__ = ("_handled", "_in_flight", "_labels", "_latency", "_metrics")

    def __init__(self, metrics: Metrics, service: str, method: str) -> None:
        self._metrics = metrics
        self._labels = (service, method)
        self._in_flight = metrics.in_flight.labels(service, method)
        self._latency = metrics.latency.labels(service, method)
        self._handled: dict[grpc.StatusCode, Counter] = {}

    def started(self) -> None:
        self._in_flight.inc()

    def finished(self, code: grpc.StatusCode, seconds: float) -> None:
        self._in_flight.dec()
        self._latency.observe(seconds)
        handled = self._handled.get(code)
        if handled is None:
            handled = self._metrics.handled.labels(*self._labels, code.name)
            self._handled[code] = handled
        handled.inc()


class Metrics:
    def __init__(self) -> None:
        # A registry of its own: tests run several servers in one process.
        self.registry = CollectorRegistry()
        self.handled = Counter(
            "grpc_server_handled",
            "Calls completed, by method and gRPC status code.",
            (*_METHOD, "grpc_code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time from the call's start to its status, by method.",
            _METHOD,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "grpc_server_in_flight_calls",
            "Calls running now, by method.",
            _METHOD,
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.pool_size = Gauge(
            "users_db_pool_size",
            "Connections the database pool keeps (it may open as many again under load).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.pool_open = Gauge(
            "users_db_pool_open_connections",
            "Connections the database pool holds open now, idle and in use.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.replica_usable = Gauge(
            "users_db_replica_usable",
            "1 while a read replica serves reads, 0 while it is skipped for the primary.",
            ("replica",),
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.replica_lag = Gauge(
            "users_db_replica_lag_seconds",
            "How far a read replica's replay was behind at its last check.",
            ("replica",),
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.pool_checked_out = Gauge(
            "users_db_pool_checked_out",
            "Connections of the pool that calls hold now.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.pool_capacity = Gauge(
            "users_db_pool_capacity",
            "Connections the pool lends at most (its size plus its overflow); calls past "
            "it wait for one.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.ready = Gauge(
            "users_ready",
            "1 while readiness is SERVING (the database answers the prober), else 0.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.change_feed_lag = Gauge(
            "users_change_feed_lag_seconds",
            "How far the change feed behind WatchUsers is behind the commits: 0 when its "
            "last round read everything; while it cannot read, the time since it last could.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.streamed_users = Counter(
            "users_streamed_users",
            "Users sent by StreamUsers.",
            registry=self.registry,
        )
        # The process's CPU seconds and resident memory (process_*): a worker's own
        # registry has none by default, and the parent of workers adds its own sum.
        ProcessCollector(registry=self.registry)

    def observe_replica(self, replica: str, usable: bool, lag: float | None) -> None:
        """Each read replica's last check (db/replicas.py)."""
        self.replica_usable.labels(replica=replica).set(1 if usable else 0)
        if lag is not None:
            self.replica_lag.labels(replica=replica).set(lag)

    def for_method(self, service: str, method: str) -> MethodMetrics:
        return MethodMetrics(self, service, method)

    def observe_pool(self, engine: AsyncEngine) -> None:
        """Called every second (by the readiness prober); a scrape sees values <= 1 s old."""
        pool = engine.pool
        if isinstance(pool, QueuePool):
            checked_out = pool.checkedout()
            self.pool_size.set(pool.size())
            self.pool_open.set(pool.checkedin() + checked_out)
            self.pool_checked_out.set(checked_out)
            self.pool_capacity.set(pool_capacity(engine))

    def observe_readiness(self, ready: bool) -> None:
        self.ready.set(1 if ready else 0)

    def observe_change_feed(self, lag_seconds: float) -> None:
        self.change_feed_lag.set(lag_seconds)

    def streamed(self, users: int) -> None:
        self.streamed_users.inc(users)


@dataclass
class MetricsEndpoint:
    """The /metrics HTTP server, on a thread of its own."""

    port: int
    server: WSGIServer

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> MetricsEndpoint:
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    server, _ = start_http_server(port, addr=bare, registry=registry)
    return MetricsEndpoint(port=int(server.server_address[1]), server=server)


def multiprocess_registry() -> CollectorRegistry:
    """The sum of every worker's files in PROMETHEUS_MULTIPROC_DIR (the parent's view)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=os.environ[MULTIPROCESS_DIR])  # type: ignore[no-untyped-call]
    registry.register(_FamilyProcessCollector())
    return registry


class _FamilyProcessCollector(Collector):
    """CPU seconds and resident memory of this process and its children (the workers)
    summed: multiprocess mode has no process metrics of its own."""

    def collect(self) -> Iterable[Metric]:
        totals = {"process_cpu_seconds_total": 0.0, "process_resident_memory_bytes": 0.0}
        for pid in (os.getpid(), *_children()):
            process = ProcessCollector(pid=functools.partial(int, pid), registry=None)
            for family in process.collect():
                for sample in family.samples:
                    if sample.name in totals:
                        totals[sample.name] += sample.value
        yield CounterMetricFamily(
            "process_cpu_seconds",
            "User and system CPU time of the server and its workers, in seconds.",
            value=totals["process_cpu_seconds_total"],
        )
        yield GaugeMetricFamily(
            "process_resident_memory_bytes",
            "Resident memory of the server and its workers, in bytes.",
            value=totals["process_resident_memory_bytes"],
        )


def _children() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").glob("*"):
        with contextlib.suppress(OSError):
            pids.extend(int(pid) for pid in (task / "children").read_text().split())
    return pids
