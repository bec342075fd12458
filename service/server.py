"""Build, start, drain and stop the gRPC server; health and reflection always on."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy.ext.asyncio import AsyncEngine
from users.v1 import address_service_pb2, user_service_pb2

from service.api import convert
from service.api.addresses import AddressService
from service.api.auth import TokenAuthenticator, TokensFileError
from service.api.calls import AccessLog, CallLayer
from service.api.page_tokens import PageTokenCodec
from service.api.registry import add_servicer
from service.api.resume_tokens import ResumeTokenCodec
from service.api.users import UserService
from service.config import Settings
from service.db import server_keys
from service.db.change_log import SqlChangeLog, listen_url_of
from service.db.engine import create_engine, pool_capacity
from service.db.replicas import ReplicaSet
from service.db.uow import SqlUnitOfWorkFactory
from service.domain import housekeeping
from service.domain.changes import ChangeFeed
from service.domain.errors import DomainError
from service.domain.ports import UnitOfWorkFactory
from service.health import SERVICE_NAME as HEALTH_SERVICE
from service.health import Health
from service.readiness import ReadinessProbe
from service.startup import StoppedError, migrate_unless_stopped, stop_event, until_stopped
from service.tls import TlsFilesError, server_credentials
from service.tracing import CallTracer, TracingConfigError, start_tracing

if TYPE_CHECKING:
    # Imported when --metrics-port asks for metrics: prometheus-client and its HTTP
    # server are memory a server without /metrics need not hold.
    from prometheus_client import CollectorRegistry

    from service.metrics import Metrics, MetricsEndpoint

log = logging.getLogger("users.server")

USER_SERVICE_DESCRIPTOR = user_service_pb2.DESCRIPTOR.services_by_name["UserService"]
ADDRESS_SERVICE_DESCRIPTOR = address_service_pb2.DESCRIPTOR.services_by_name["AddressService"]
USER_SERVICE = USER_SERVICE_DESCRIPTOR.full_name
ADDRESS_SERVICE = ADDRESS_SERVICE_DESCRIPTOR.full_name
# API.md: "" is liveness; each users.v1 service is readiness.
READINESS = (USER_SERVICE, ADDRESS_SERVICE)
# With the pool's connections, the default bound on calls in flight (admission_limit).
IN_FLIGHT_PER_CORE = 32
# The change feed's connections: its loop, and watchers catching up from the database.
CHANGE_FEED_POOL = 4


class StartupError(Exception):
    """The server cannot start; the message is one line for the operator."""


@dataclass
class RunningServer:
    server: grpc.aio.Server
    engine: AsyncEngine
    health: Health
    port: int
    calls: CallLayer
    readiness: ReadinessProbe
    housekeeping: asyncio.Task[None] | None = None
    change_feed: ChangeFeed | None = None
    replicas: ReplicaSet | None = None
    auth: TokenAuthenticator | None = None
    metrics_endpoint: MetricsEndpoint | None = None
    tracer: CallTracer | None = None

    async def stop(self, grace: float | None) -> None:
        """Readiness NOT_SERVING first; then new calls are refused, open server streams end
        with UNAVAILABLE (their clients resume elsewhere), unary calls get `grace` seconds;
        then the pool is closed."""
        await self.health.draining()
        self.calls.begin_draining()
        if grace is not None:
            # Calls that arrive meanwhile get a clean UNAVAILABLE from the call layer;
            # once grpc itself stops, calls still queued inside it end CANCELLED.
            started = time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self.calls.drained()
            grace = max(0.0, grace - (time.monotonic() - started))
        await self.server.stop(grace)
        if self.change_feed is not None:
            await self.change_feed.stop()
        if self.replicas is not None:
            await self.replicas.stop()
        if self.housekeeping is not None:
            self.housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.housekeeping
        await self.readiness.stop()
        await self.engine.dispose()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        if self.tracer is not None:
            # The last calls' spans are sent before the process exits.
            await asyncio.to_thread(self.tracer.shutdown)


async def start(
    settings: Settings, *, migrate: bool = True, stop: asyncio.Event | None = None
) -> RunningServer:
    """With `stop`: StoppedError if it is set while the database is being reached (the
    rest of the start takes milliseconds and is never interrupted: cancelled inside
    grpc's own start, a server would be left running)."""
    engine = create_engine(settings.database_url, pooler=settings.database_pooler)
    readiness: ReadinessProbe | None = None
    endpoint: MetricsEndpoint | None = None
    change_feed: ChangeFeed | None = None
    replicas: ReplicaSet | None = None
    tracer: CallTracer | None = None
    try:
        tracer = tracing()  # a wrong OTEL_* setting fails the start before any migration
        if migrate:
            await migrate_unless_stopped(engine, stop)
        key = await until_stopped(stop, _page_token_key(settings, engine))
        page_tokens = PageTokenCodec(key)
        resume_tokens = ResumeTokenCodec(key)
        change_feed = change_feed_for(settings, resume_tokens)
        # Not interruptible: the database answered just now, and a feed cut short while
        # connecting would leave a driver thread behind (aiosqlite).
        await change_feed.start()
        auth = authenticator(settings)
        metrics = new_metrics() if settings.metrics_port is not None else None
        calls = CallLayer(
            auth=auth,
            metrics=metrics,
            max_in_flight=admission_limit(settings, engine),
            access_log=AccessLog(settings.access_log, settings.slow_call_ms / 1000),
            tracer=tracer,
        )
        replicas = replicas_for(settings, metrics)
        await replicas.start()  # each check is bounded (CHECK_TIMEOUT_SECONDS)
        new_uow = SqlUnitOfWorkFactory(
            engine,
            autocommit_reads=settings.database_pooler == "none",
            replicas=replicas if replicas else None,
        )
        server = grpc.aio.server(options=server_options(settings))
        add_servicer(
            server,
            UserService(
                new_uow,
                page_tokens,
                change_feed,
                resume_tokens,
                import_idle_seconds=settings.import_idle_seconds,
                streamed=None if metrics is None else metrics.streamed,
            ),
            USER_SERVICE_DESCRIPTOR,
            calls,
        )
        add_servicer(
            server,
            AddressService(new_uow, page_tokens),
            ADDRESS_SERVICE_DESCRIPTOR,
            calls,
        )
        health = Health(server, READINESS)
        readiness = ReadinessProbe(
            settings.database_url,
            health.set_ready,
            on_tick=None
            if metrics is None
            else lambda ready: _observe(metrics, ready, engine, change_feed),
            pooler=settings.database_pooler,
        )
        reflection.enable_server_reflection(
            (*READINESS, HEALTH_SERVICE, reflection.SERVICE_NAME), server
        )
        port = listen(server, settings)
        if metrics is not None and settings.metrics_port is not None and not settings.worker:
            # Workers leave /metrics to their parent, which sums them (service/metrics.py).
            endpoint = metrics_endpoint(settings, metrics.registry)
        await server.start()
    except BaseException:
        if change_feed is not None:
            await change_feed.stop()
        if replicas is not None:
            await replicas.stop()
        if readiness is not None:
            await readiness.stop()
        if endpoint is not None:
            endpoint.close()
        if tracer is not None:
            tracer.shutdown()
        await engine.dispose()
        raise
    await health.serving()
    readiness.start()
    return RunningServer(
        server=server,
        engine=engine,
        health=health,
        port=port,
        calls=calls,
        readiness=readiness,
        housekeeping=asyncio.create_task(
            _housekeep(new_uow, change_feed, settings.change_retention)
        ),
        change_feed=change_feed,
        replicas=replicas,
        auth=auth,
        metrics_endpoint=endpoint,
        tracer=tracer,
    )


def _observe(metrics: Metrics, ready: bool, engine: AsyncEngine, change_feed: ChangeFeed) -> None:
    """The readiness prober's tick (each second): the gauges a scrape reads."""
    metrics.observe_readiness(ready)
    metrics.observe_pool(engine)
    metrics.observe_change_feed(change_feed.lag_seconds())


def listen(server: grpc.aio.Server, settings: Settings) -> int:
    """Binds the address (TLS if configured); the port bound (settings.port 0: any)."""
    address = f"{settings.host}:{settings.port}"
    credentials = tls_credentials(settings)
    try:
        if credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, credentials)
    except RuntimeError as error:
        raise StartupError(
            f"cannot listen on {address}: the port is taken or the host is not an "
            "address of this machine"
        ) from error


def change_feed_for(settings: Settings, resume_tokens: ResumeTokenCodec) -> ChangeFeed:
    return ChangeFeed(
        # An engine of its own: the feed's loop never waits for, or holds, a connection
        # that a call needs.
        SqlChangeLog(
            create_engine(
                settings.database_url,
                pool_size=CHANGE_FEED_POOL,
                pooler=settings.database_pooler,
            ),
            listen_url_of(settings),
        ),
        lambda change: convert.change_to_proto(
            change, resume_tokens.issue(change.position)
        ).SerializeToString(),
    )


def replicas_for(settings: Settings, metrics: Metrics | None) -> ReplicaSet:
    return ReplicaSet(
        settings.read_database_urls,
        max_lag=settings.max_replica_lag,
        pooler=settings.database_pooler,
        observe=None if metrics is None else metrics.observe_replica,
    )


def admission_limit(settings: Settings, engine: AsyncEngine) -> int:
    """--max-in-flight, or by default every pooled connection busy plus, per core, what a
    core's share of the event loop can keep moving between database round trips: more
    calls than that only queue for the pool past their deadlines."""
    if settings.max_in_flight > 0:
        return settings.max_in_flight
    return pool_capacity(engine) + IN_FLIGHT_PER_CORE * (os.cpu_count() or 1)


def new_metrics() -> Metrics:
    from service.metrics import Metrics  # noqa: PLC0415 - only with --metrics-port

    return Metrics()


def metrics_endpoint(settings: Settings, registry: CollectorRegistry) -> MetricsEndpoint:
    from service.metrics import serve_metrics  # noqa: PLC0415 - only with --metrics-port

    assert settings.metrics_port is not None
    try:
        return serve_metrics(settings.host, settings.metrics_port, registry)
    except OSError as error:
        raise StartupError(
            f"cannot serve metrics on {settings.host}:{settings.metrics_port}: {error.strerror}"
        ) from None


def tls_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    try:
        return server_credentials(settings)
    except TlsFilesError as error:
        raise StartupError(str(error)) from None


def tracing() -> CallTracer | None:
    """The OTEL_* environment's tracer (API.md: off unless it asks for one)."""
    try:
        return start_tracing()
    except TracingConfigError as error:
        raise StartupError(str(error)) from None


def authenticator(settings: Settings) -> TokenAuthenticator | None:
    if not settings.auth_tokens_file:
        return None
    try:
        return TokenAuthenticator(settings.auth_tokens_file)
    except TokensFileError as error:
        raise StartupError(str(error)) from None


async def _housekeep(
    new_uow: UnitOfWorkFactory, change_feed: ChangeFeed, retention: timedelta
) -> None:
    """Purges expired request_ids and abandoned import staging at start, then hourly;
    changes past their retention as often as a quarter of it (at most every 5 minutes),
    so a change outlives its retention by a bounded margin."""
    every = min(housekeeping.PURGE_EVERY_SECONDS, max(0.5, retention.total_seconds() / 4), 300.0)
    rounds_per_purge = max(1, round(housekeeping.PURGE_EVERY_SECONDS / every))
    for round_number in itertools.count():
        try:
            if round_number % rounds_per_purge == 0:
                await _purge(new_uow)
            purged = await change_feed.purge_expired(retention)
        except DomainError as error:
            # The database may be away for a while; the next round tries again.
            log.warning("housekeeping skipped (%s); next try in %.0f s", error.message, every)
        except Exception:
            log.exception("housekeeping failed; next try in %.0f s", every)
        else:
            if purged:
                log.info("housekeeping: forgot %d changes older than %s", purged, retention)
        await asyncio.sleep(every)


async def _purge(new_uow: UnitOfWorkFactory) -> None:
    purged = await housekeeping.purge_expired(new_uow)
    if purged.request_ids or purged.imports:
        log.info(
            "housekeeping: forgot %d request_ids, discarded %d abandoned imports",
            purged.request_ids,
            purged.imports,
        )


def server_options(settings: Settings) -> list[tuple[str, int]]:
    # gRPC turns SO_REUSEPORT on by default, which lets a second server bind a port that
    # is in use without an error; only worker processes share a port on purpose.
    options = [("grpc.so_reuseport", 1 if settings.worker else 0)]
    if settings.max_concurrent_streams > 0:
        # HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS, enforced by grpc core in C: a client
        # past it queues its calls itself. With overload protection on, grpc would refuse
        # a stream opened before the client saw a freed slot, and the client retry at once.
        options += [
            ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
            ("grpc.http.overload_protection", 0),
        ]
    return options


async def _page_token_key(settings: Settings, engine: AsyncEngine) -> bytes:
    """PAGE_TOKEN_KEY if set, else the key stored in the database: either way every worker
    and every restart serving this database accepts the tokens of the others."""
    if settings.page_token_key:
        return settings.page_token_key.encode("utf-8")
    return await server_keys.load_or_create(engine, server_keys.PAGE_TOKEN_KEY)


# How often a worker checks that its parent still runs.
PARENT_CHECK_SECONDS = 1.0


async def _stop_if_orphaned(stop: asyncio.Event) -> None:
    """A worker whose parent died without passing a signal on (SIGKILL, OOM) drains and
    exits instead of serving on unsupervised, holding the port and its connections."""
    parent = os.getppid()
    while not stop.is_set():
        await asyncio.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            log.warning("the parent process %d is gone: this worker stops", parent)
            stop.set()


async def serve(settings: Settings) -> None:
    """Runs until SIGTERM or SIGINT, then drains within the grace period. One that comes
    before the database is ready ends the start instead; one during the rest of the start
    (a few ms) drains a server that took no calls yet."""
    stop = stop_event()
    try:
        # A worker's parent migrated already; workers starting at once would race.
        running = await start(settings, migrate=not settings.worker, stop=stop)
    except StoppedError:
        log.info("stopped before serving")
        return
    if settings.worker:
        log.info("worker pid %d serving on %s:%d", os.getpid(), settings.host, running.port)
    else:
        log.info("users.v1 serving on %s:%d", settings.host, running.port)
    loop = asyncio.get_running_loop()
    if running.auth is not None:
        loop.add_signal_handler(signal.SIGHUP, running.auth.reload)
    orphaned = asyncio.create_task(_stop_if_orphaned(stop)) if settings.worker else None
    await stop.wait()
    if orphaned is not None:
        orphaned.cancel()
    log.info("stopping: draining calls for up to %.1f s", settings.grace_seconds)
    await running.stop(settings.grace_seconds)
    log.info("stopped")
