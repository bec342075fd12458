"""OpenTelemetry glue (imported only when tracing is on, service/tracing.py): the SDK's
provider, sampler and exporters as the OTEL_* environment sets them; a server span per
call; a client span per database statement, named by its operation and table only.

The SDK's gRPC server interceptor does not fit here: it expects a server stream to be an
async generator (ours write through the context, api/calls.py), and does not see the
code the call layer decides. The call layer starts and ends the span itself instead.
The statement spans come from SQLAlchemy's cursor events rather than
opentelemetry-instrumentation-sqlalchemy, which declares SQLAlchemy < 2.1 and records the
statement's text; a statement's values never reach a span either way (they are bound).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExceptionContext

from service.tracing import TracingConfigError

DEFAULT_SERVICE_NAME = "users-v1"
INSTRUMENTATION = "users.v1"
# OpenTelemetry's semantic conventions for gRPC servers: the codes that are the server's
# failure (others, such as NOT_FOUND, leave a server span's status unset).
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
DB_SYSTEMS = {"postgresql": "postgresql", "mysql": "mariadb", "sqlite": "sqlite"}
_STATEMENT_SPAN = "users.v1.statement_span"


class _CallSpan:
    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span, token: object) -> None:
        self._span = span
        self._token = token

    def end(self, code: grpc.StatusCode) -> tuple[str, str]:
        span = self._span
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in SERVER_ERRORS:
            span.set_status(Status(StatusCode.ERROR, code.name))
        span.end()
        otel_context.detach(self._token)  # type: ignore[arg-type]
        ids = span.get_span_context()
        return trace.format_trace_id(ids.trace_id), trace.format_span_id(ids.span_id)


class Tracer:
    """CallTracer (service/tracing.py) on the SDK."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer(INSTRUMENTATION)

    def start(self, service: str, method: str, metadata: Any) -> _CallSpan:
        carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
        parent = propagate.extract(carrier)
        span = self._tracer.start_span(
            f"{service}/{method}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
        )
        return _CallSpan(span, otel_context.attach(trace.set_span_in_context(span, parent)))

    def shutdown(self) -> None:
        self._provider.shutdown()


def configure(environ: Mapping[str, str]) -> Tracer:
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    # The sampler is OTEL_TRACES_SAMPLER's (default: parentbased_always_on), the batching
    # OTEL_BSP_*'s, and each exporter reads its own OTEL_EXPORTER_* settings.
    provider = TracerProvider(resource=resource)
    for exporter in _exporters(environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = Tracer(provider)
    trace_statements(tracer._tracer)
    return tracer


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )
    exporters = []
    for name in filter(None, names):
        # As the SDK's own configurator: "otlp" is the exporter of the OTLP protocol set.
        entry = f"otlp_proto_{protocol.split('/')[0]}" if name == "otlp" else name
        found = entry_points(group="opentelemetry_traces_exporter", name=entry)
        if not found:
            raise TracingConfigError(
                f"OTEL_TRACES_EXPORTER={name} (protocol {protocol}): no such span exporter "
                "is installed (this build has otlp over grpc, and console)"
            )
        exporters.append(next(iter(found)).load()())
    return exporters


# ------------------------------------------------------------------ statements

# The statement's first word, and the table after FROM, INTO, UPDATE or COPY: identifiers
# only, so nothing but SQL keywords and names can reach a span.
_OPERATION = re.compile(r"\s*(\w+)")
_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE|COPY)\s+[`"]?(\w+)', re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def described(statement: str) -> tuple[str, str]:
    """(operation, table) of a SQL statement; table "" when it names none."""
    operation = _OPERATION.match(statement)
    table = _TABLE.search(statement)
    return (
        operation.group(1).upper() if operation else "SQL",
        table.group(1) if table else "",
    )


_statements: trace.Tracer | None = None  # the tracer of trace_statements


def trace_statements(tracer: trace.Tracer) -> None:
    """A span for every statement a call sends, on every engine (db/raw.py announces its
    own to the same events). Outside a sampled call (the readiness ping, the change
    feed's loop) none is made."""
    global _statements  # noqa: PLW0603 - the events are the process's, as the tracer
    _statements = tracer
    if not event.contains(Engine, "before_cursor_execute", _before):
        event.listen(Engine, "before_cursor_execute", _before)
        event.listen(Engine, "after_cursor_execute", _after)
        event.listen(Engine, "handle_error", _failed)


def _before(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
    if _statements is None or not trace.get_current_span().is_recording():
        return
    operation, table = described(statement)
    attributes = {
        "db.system.name": DB_SYSTEMS.get(conn.dialect.name, conn.dialect.name),
        "db.operation.name": operation,
    }
    if table:
        attributes["db.collection.name"] = table
    conn.info[_STATEMENT_SPAN] = _statements.start_span(
        f"{operation} {table}" if table else operation, kind=SpanKind.CLIENT, attributes=attributes
    )


def _after(conn: Connection, *_: Any) -> None:
    span = conn.info.pop(_STATEMENT_SPAN, None)
    if span is not None:
        span.end()


def _failed(context: ExceptionContext) -> None:
    conn = context.connection
    span = conn.info.pop(_STATEMENT_SPAN, None) if conn is not None else None
    if span is not None:
        # The error's class only: a driver's message may quote a row's values.
        span.set_status(Status(StatusCode.ERROR, type(context.original_exception).__name__))
        span.end()
