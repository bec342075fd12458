"""The one per-call layer: auth, malformed requests, error mapping, drain, metrics, trace
span, log line.

Every users.v1 method runs inside exactly one of the three wrappers below (unary,
server-streaming, client-streaming); health and reflection do not, so they stay open.
The error table itself lives in api/status.py; this layer only applies it.

A finished call is never touched. grpc releases its core call once the handler's task
ends, and `peer()` (among others) reads through that pointer: read after the call was
cancelled it is a use-after-free that kills the process (grpc/grpc#29927). So what the
log line needs is read when the call starts, a server stream is a coroutine that writes
through the context (never an async generator, whose cleanup grpc leaves to the garbage
collector after the call is gone), and the wrapper ends before grpc does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpc._cython import cygrpc  # type: ignore[attr-defined]  # untyped core module

from service.api import status
from service.api.errors import MalformedRequestError, OverloadedError, ServerDrainingError
from service.tracing import CallSpan, CallTracer

log = logging.getLogger("users.calls")
# A cancel this close to the call's deadline is counted as the deadline (_cancelled_code).
DEADLINE_SLACK_SECONDS = 0.02

Ctx = grpc.aio.ServicerContext[Any, Any]
UnaryHandler = Callable[[Any, Ctx], Awaitable[Any]]
StreamHandler = Callable[[Any, Ctx], AsyncGenerator[Any, None]]
StreamCall = Callable[[Any, Ctx], Awaitable[None]]
OK = grpc.StatusCode.OK
QUIET_SECONDS = 0.2

# Set by a server stream's handler (WatchUsers): where its client resumes once the stream
# breaks off. The drain status carries it in its ErrorInfo metadata. The handler runs in
# the call's task, so what it sets is seen here and by no other call.
resume_point: ContextVar[Callable[[], dict[str, str]] | None] = ContextVar(
    "resume_point", default=None
)


class Undecodable:
    """What the forgiving deserializer returns for bytes that are not the request message."""

    __slots__ = ("message_type",)

    def __init__(self, message_type: str) -> None:
        self.message_type = message_type


class Authenticator(Protocol):
    def check(self, metadata: Any, method: str, writes: bool) -> None:
        """Raises AuthenticationError or PermissionDeniedError."""


class MethodMetrics(Protocol):
    def started(self) -> None: ...
    def finished(self, code: grpc.StatusCode, seconds: float) -> None: ...


class CallMetrics(Protocol):
    def for_method(self, service: str, method: str) -> MethodMetrics: ...


ACCESS_LOG_MODES = ("all", "errors", "off")


@dataclass(frozen=True, slots=True)
class AccessLog:
    """Which finished calls get a line (API.md, --access-log): every call; only failed
    calls and calls slower than `slow_seconds` (the default: a line per call costs a busy
    server about a twentieth of its CPU); or none."""

    mode: str = "errors"
    slow_seconds: float = 1.0

    def wants(self, code: grpc.StatusCode, seconds: float) -> bool:
        if self.mode == "errors":
            return code is not OK or seconds >= self.slow_seconds
        return self.mode == "all"


@dataclass(frozen=True, slots=True)
class Method:
    service: str  # users.v1.UserService
    name: str  # GetUser
    writes: bool
    # A stream that stays open until the client leaves (WatchUsers): mostly idle, so it
    # is not one of the calls in flight that --max-in-flight bounds.
    open_ended: bool = False

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


class _OpenStream:
    __slots__ = ("drained", "inside", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.drained = False  # begin_draining() cancelled its task
        # True while the task waits inside the servicer's generator (a database read, a
        # wait for changes): cancelling it there ends the stream at once. Otherwise it
        # waits on the transport, and the stream ends after the message being written.
        self.inside = False

    @classmethod
    def of_current_task(cls) -> _OpenStream:
        task = asyncio.current_task()
        assert task is not None
        return cls(task)


class CallLayer:
    def __init__(
        self,
        *,
        auth: Authenticator | None = None,
        metrics: CallMetrics | None = None,
        max_in_flight: int | None = None,
        access_log: AccessLog | None = None,
        tracer: CallTracer | None = None,
    ) -> None:
        """`max_in_flight`: calls beyond it are refused at once with UNAVAILABLE (API.md:
        overloaded) instead of queueing for the database past their deadlines."""
        self.auth = auth
        self._metrics = metrics
        self._access = access_log or AccessLog()
        self._tracer = tracer
        # The peer is read at the start of a call (never after it ended, issue 11), and
        # only when a line may be written.
        self._reads_peer = self._access.mode != "off"
        self._max_in_flight = max_in_flight if max_in_flight is not None else sys.maxsize
        # Built once: under overload, refusing must cost as little as possible.
        self._overloaded = status.status_for(OverloadedError())
        self._draining = False
        self._streams: set[_OpenStream] = set()
        self._in_flight = 0
        self._last_refused = 0.0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def begin_draining(self) -> None:
        """New calls are refused with UNAVAILABLE and open server streams end with it."""
        self._draining = True
        # The quiet period counts from now: clients between two calls when the drain
        # began (none in flight, none refused yet) still get their clean refusal.
        self._last_refused = time.monotonic()
        for stream in self._streams:
            if stream.inside:
                stream.drained = True
                stream.task.cancel()

    async def drained(self, quiet: float = QUIET_SECONDS) -> None:
        """Returns once no call runs and none was refused for `quiet` seconds, the drain's
        start counting as a refusal: stopping grpc then cancels (CANCELLED, not retried by
        clients) only calls that race its GOAWAY."""
        # Polled, and only while stopping: an Event would cost every call a check.
        while self._in_flight or time.monotonic() - self._last_refused < quiet:  # noqa: ASYNC110
            await asyncio.sleep(quiet / 5)

    def unary(self, method: Method, handler: UnaryHandler) -> UnaryHandler:
        observe = self._observer(method)

        async def call(request: Any, context: Ctx) -> Any:
            started = time.perf_counter()
            code = OK
            peer = _peer(context) if self._reads_peer else ""
            span = self._span(method, context)
            observe.started()
            self._in_flight += 1
            try:
                self._admit(method, request, context)
                return await handler(request, context)
            except asyncio.CancelledError:
                code = _cancelled_code(context)
                raise
            except grpc.aio.AbortError:
                code = _aborted_code(context)
                raise
            except cygrpc.ExecuteBatchError:
                # A read or write on a call the client has left (grpc did not cancel us yet).
                code = _cancelled_code(context)
                raise asyncio.CancelledError from None
            except Exception as error:
                failed = self._refusal_or_status(error)
                code = _failed_code(context, failed)
                await _fail(context, failed)
            finally:
                self._ended()
                _finish(observe, method, code, started, peer=peer, access=self._access, span=span)

        return call

    def client_stream(self, method: Method, handler: UnaryHandler) -> UnaryHandler:
        async def checked(requests: AsyncIterator[Any], context: Ctx) -> Any:
            return await handler(_decoded(requests, context), context)

        return self.unary(method, checked)

    def server_stream(self, method: Method, handler: StreamHandler) -> StreamCall:
        """The handler's messages written through the context by one coroutine, so the
        handler is closed (its cursor released) inside the call, cancelled or not."""
        observe = self._observer(method)
        streams = self._streams

        async def call(request: Any, context: Ctx) -> None:
            started = time.perf_counter()
            code = OK
            peer = _peer(context) if self._reads_peer else ""
            span = self._span(method, context)
            observe.started()
            self._in_flight += 1
            stream = _OpenStream.of_current_task()
            streams.add(stream)
            counted = True
            try:
                self._admit(method, request, context)
                if method.open_ended:
                    self._ended()
                    counted = False
                async with contextlib.aclosing(handler(request, context)) as responses:
                    stream.inside = True
                    async for response in responses:
                        stream.inside = False
                        await context.write(response)
                        if self._draining:
                            raise ServerDrainingError(
                                point() if (point := resume_point.get()) else None
                            )
                        stream.inside = True
            except asyncio.CancelledError:
                # begin_draining() cancelled it, and nothing else did: end with UNAVAILABLE.
                if not (stream.drained and stream.task.uncancel() == 0):
                    code = _cancelled_code(context)
                    raise
                failed = _drain_status()
                code = _failed_code(context, failed)
                await _fail(context, failed)
            except grpc.aio.AbortError:
                code = _aborted_code(context)
                raise
            except cygrpc.ExecuteBatchError:
                # A read or write on a call the client has left (grpc did not cancel us yet).
                code = _cancelled_code(context)
                raise asyncio.CancelledError from None
            except Exception as error:
                failed = self._refusal_or_status(error)
                code = _failed_code(context, failed)
                await _fail(context, failed)
            finally:
                streams.discard(stream)
                if counted:
                    self._ended()
                _finish(observe, method, code, started, peer=peer, access=self._access, span=span)

        return call

    def _ended(self) -> None:
        self._in_flight -= 1

    def _admit(self, method: Method, request: Any, context: Ctx) -> None:
        if self._draining:
            self._last_refused = time.monotonic()
            raise ServerDrainingError()
        if self._in_flight > self._max_in_flight:
            raise OverloadedError()
        if _deadline_passed(context):
            # Queued in grpc or the event loop past its deadline: no database work for it.
            raise asyncio.CancelledError
        if self.auth is not None:
            self.auth.check(context.invocation_metadata(), method.path, method.writes)
        if isinstance(request, Undecodable):
            raise MalformedRequestError(request.message_type)

    def _refusal_or_status(self, error: Exception) -> grpc.Status:
        return self._overloaded if type(error) is OverloadedError else status.status_for(error)

    def _span(self, method: Method, context: Ctx) -> CallSpan | None:
        if self._tracer is None:
            return None
        # Read while the call is alive, as the peer (see the module docstring).
        return self._tracer.start(method.service, method.name, context.invocation_metadata())

    def _observer(self, method: Method) -> MethodMetrics:
        if self._metrics is None:
            return _NO_METRICS
        return self._metrics.for_method(method.service, method.name)


async def _decoded(requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Undecodable):
            raise MalformedRequestError(request.message_type)
        yield request
    await _half_closed(context)


async def _half_closed(context: Ctx) -> None:
    """Returns if the client's stream really ended; a call that ended otherwise is
    cancelled here.

    grpc's request iterator ends alike when the client half-closes and when the call is
    cancelled or its deadline passes: the server's receive completes empty either way,
    and grpc cancels the handler only once it processes the call's close, which its
    poller thread may deliver a while later. The end of a client stream is what commits
    an import (all or nothing, API.md), so an end that is not the client's must not pass
    for one (the storm saw an abandoned import's rows stored). A passed deadline says so
    at once. Otherwise the response's headers are sent now: grpc core fails a send on a
    call it has cancelled (ExecuteBatchError, which the call layer takes for "client
    gone"), and on a call the client half-closed the headers simply go a moment early.
    """
    if _deadline_passed(context):
        raise asyncio.CancelledError
    await context.send_initial_metadata(())


def _drain_status() -> grpc.Status:
    point = resume_point.get()
    return status.status_for(ServerDrainingError(point() if point else None))


async def _fail(context: Ctx, failed: grpc.Status) -> None:
    """Ends the call with `failed` (grpc's AbortError propagates), unless the client is
    gone: then nothing is sent and the call ends quietly."""
    if _deadline_passed(context):
        # grpc core has cancelled the call already: a status sent now would fail there
        # and be logged as an error. CancelledError is how a handler says "gone".
        raise asyncio.CancelledError
    with contextlib.suppress(cygrpc.ExecuteBatchError):
        # The client left while the status was sent; grpc then ends the call through
        # the AbortError that abort() recorded before sending.
        await context.abort(failed.code, failed.details, failed.trailing_metadata)


def _failed_code(context: Ctx, failed: grpc.Status) -> grpc.StatusCode:
    return grpc.StatusCode.DEADLINE_EXCEEDED if _deadline_passed(context) else failed.code


def _deadline_passed(context: Ctx) -> bool:
    # Reads the deadline grpc copied into the call's state, not the core call.
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0


def _peer(context: Ctx) -> str:
    # Read while the call is alive (see the module docstring), and only when it is logged.
    return context.peer() if log.isEnabledFor(logging.INFO) else ""


def _aborted_code(context: Ctx) -> grpc.StatusCode:
    # A handler that called context.abort itself (none should).
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _cancelled_code(context: Ctx) -> grpc.StatusCode:
    # grpc cancels the handler both when the client goes away and at the deadline. The
    # client's own timer fires first (its deadline is this one less the request's way
    # here), and its cancel can arrive just before the deadline passes here: within
    # DEADLINE_SLACK_SECONDS of it, the call ran out of time rather than being given up.
    remaining = context.time_remaining()
    if remaining is not None and remaining <= DEADLINE_SLACK_SECONDS:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


def _finish(
    observe: MethodMetrics,
    method: Method,
    code: grpc.StatusCode,
    started: float,
    *,
    peer: str,
    access: AccessLog,
    span: CallSpan | None,
) -> None:
    seconds = time.perf_counter() - started
    observe.finished(code, seconds)
    ids = span.end(code) if span is not None else None
    if access.wants(code, seconds) and log.isEnabledFor(logging.INFO):
        milliseconds = round(seconds * 1000, 3)
        fields: dict[str, object] = {
            "method": method.path,
            "code": code.name,
            "duration_ms": milliseconds,
            "peer": peer,
        }
        if ids is None:
            log.info(
                "%s %s %.3f ms peer=%s", method.path, code.name, milliseconds, peer, extra=fields
            )
            return
        # API.md: with tracing on, the line names the call's trace, to find one from the other.
        fields["trace_id"], fields["span_id"] = ids
        log.info(
            "%s %s %.3f ms peer=%s trace_id=%s span_id=%s",
            method.path,
            code.name,
            milliseconds,
            peer,
            *ids,
            extra=fields,
        )


class _NoMetrics:
    def started(self) -> None:
        pass

    def finished(self, code: grpc.StatusCode, seconds: float) -> None:
        pass


_NO_METRICS = _NoMetrics()
