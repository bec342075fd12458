"""OpenTelemetry tracing (API.md "Server process"): off by default with no OpenTelemetry
module loaded; on through OTEL_*, a server span per call under the caller's span, a
span per statement (the raw asyncpg path's too), nothing of a row in any attribute, and
the call's log line naming its trace. Spans travel the real OTLP/gRPC wire path to a
receiver in this process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from users.v1 import resources_pb2, user_service_pb2

from service.spans import described
from service.tracing import wanted
from tests.ops.loaded_modules import modules_after_a_call
from tests.process.server_process import ServerProcess, free_port, sqlite_url
from tests.rpc import UserStub, create_user, fails, fresh_email

# The caller's span, as a client sends it (W3C Trace Context).
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = (("traceparent", f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),)
SPANS_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Received:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    status: int
    service_name: str


class Receiver(otlp_grpc.TraceServiceServicer):
    """An OTLP trace collector that keeps what it is sent."""

    def __init__(self) -> None:
        self.spans: list[Received] = []

    async def Export(
        self, request: otlp.ExportTraceServiceRequest, context: Any
    ) -> otlp.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(
                    _received(span, str(resource.get("service.name"))) for span in scope_spans.spans
                )
        return otlp.ExportTraceServiceResponse()

    def named(self, name: str) -> list[Received]:
        return [span for span in self.spans if span.name == name]

    def children(self, parent: Received) -> list[Received]:
        return [span for span in self.spans if span.parent_span_id == parent.span_id]


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value") or "string_value")


def _received(span: Span, service_name: str) -> Received:
    return Received(
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        kind=span.kind,
        attributes={a.key: _value(a.value) for a in span.attributes},
        status=span.status.code,
        service_name=service_name,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    server = grpc.aio.server()
    collector = Receiver()
    otlp_grpc.add_TraceServiceServicer_to_server(collector, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield collector, port
    await server.stop(None)


async def spans_of(receiver: Receiver, *names: str) -> None:
    deadline = time.monotonic() + SPANS_TIMEOUT_SECONDS
    while not all(receiver.named(name) for name in names):
        assert time.monotonic() < deadline, [span.name for span in receiver.spans]
        await asyncio.sleep(0.05)


def call_lines(stderr: str) -> Iterator[dict[str, Any]]:
    for line in stderr.splitlines():
        if line.startswith("{") and '"method"' in line:
            yield json.loads(line)


@pytest.mark.slow
async def test_spans_join_the_caller_s_trace_with_statements_and_no_row_values(
    tmp_path: Path, postgres_url: str, receiver: tuple[Receiver, int]
) -> None:
    collector, collector_port = receiver
    port = free_port()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
        "OTEL_SERVICE_NAME": "users-v1-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "LOG_FORMAT": "json",
    }
    args = ["--port", str(port), "--database-url", postgres_url, "--access-log", "all"]
    email, address = fresh_email(), fresh_email("example.org")
    with ServerProcess(tmp_path, args, port=port, env=env) as process:
        async with grpc.aio.insecure_channel(process.target) as channel:
            users = UserStub(channel)
            user = resources_pb2.User(
                name="Traced Person", email=email, addresses=[resources_pb2.Address(email=address)]
            )
            created = await users.CreateUser(
                user_service_pb2.CreateUserRequest(user=user), metadata=TRACEPARENT
            )
            for _ in range(4):
                await create_user(users)
            await users.GetUser(user_service_pb2.GetUserRequest(id=created.id))
            await fails(users.GetUser(user_service_pb2.GetUserRequest(id=10**12)))
            request = user_service_pb2.StreamUsersRequest(after_id=created.id - 1, batch_size=2)
            streamed = [m async for m in users.StreamUsers(request, metadata=TRACEPARENT)]
        assert sum(len(message.users) for message in streamed) == 5
        await spans_of(
            collector, "users.v1.UserService/CreateUser", "users.v1.UserService/StreamUsers"
        )
        assert process.terminate(10) == 0, process.stderr
    stderr = process.stderr

    # CreateUser: a server span under the caller's span, its statements under it.
    (create,) = [s for s in collector.named("users.v1.UserService/CreateUser")
                 if s.trace_id == CLIENT_TRACE]  # fmt: skip
    assert create.parent_span_id == CLIENT_SPAN
    assert create.kind == Span.SPAN_KIND_SERVER
    assert create.service_name == "users-v1-under-test"
    assert create.attributes["rpc.system"] == "grpc"
    assert create.attributes["rpc.method"] == "CreateUser"
    assert create.attributes["rpc.grpc.status_code"] == 0
    statements = collector.children(create)
    names = {span.name for span in statements}
    assert {"INSERT users", "INSERT addresses"} <= names, names
    assert all(span.trace_id == CLIENT_TRACE for span in statements)
    assert all(span.kind == Span.SPAN_KIND_CLIENT for span in statements)
    insert = next(span for span in statements if span.name == "INSERT users")
    assert insert.attributes == {
        "db.system.name": "postgresql",
        "db.operation.name": "INSERT",
        "db.collection.name": "users",
    }

    # StreamUsers: three batches of at most two users, each a keyset read of its own.
    (stream,) = collector.named("users.v1.UserService/StreamUsers")
    assert (stream.trace_id, stream.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    reads = [span for span in collector.children(stream) if span.name == "SELECT users"]
    assert len(reads) >= 3, [span.name for span in collector.children(stream)]

    # GetUser on PostgreSQL goes past SQLAlchemy (db/raw.py) and still has its span; with
    # no traceparent it starts a trace of its own. NOT_FOUND is the caller's: no error.
    found, missing = collector.named("users.v1.UserService/GetUser")
    assert found.parent_span_id == "" and found.trace_id != CLIENT_TRACE
    assert [span.name for span in collector.children(found)] == ["SELECT users"]
    assert missing.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert missing.status == Status.STATUS_CODE_UNSET

    # Nothing of a row, an email least of all, in any attribute of any span.
    values = [str(value) for span in collector.spans for value in span.attributes.values()]
    assert not [value for value in values if "@" in value or "Traced" in value], values

    # The call's log line names its trace and span.
    (line,) = [line for line in call_lines(stderr) if line["trace_id"] == CLIENT_TRACE
               and line["method"] == "/users.v1.UserService/CreateUser"]  # fmt: skip
    assert line["span_id"] == create.span_id


def test_with_tracing_off_no_opentelemetry_module_is_loaded(tmp_path: Path) -> None:
    """A server started and called in a process of its own, OTEL_* unset."""
    url = sqlite_url(tmp_path / "users.db")
    assert modules_after_a_call(url, ("opentelemetry",), metrics_port=0) == []


def test_tracing_is_on_only_when_the_environment_names_an_exporter_or_endpoint() -> None:
    assert not wanted({})
    assert not wanted({"OTEL_SERVICE_NAME": "users"})
    assert wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not wanted({"OTEL_TRACES_EXPORTER": "none"})
    assert not wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"})


@pytest.mark.parametrize(
    ("statement", "operation", "table"),
    [
        ("SELECT users.id, users.email FROM users WHERE users.id > $1 LIMIT $2", "SELECT", "users"),
        ('INSERT INTO "addresses" (user_id, email) VALUES (?, ?)', "INSERT", "addresses"),
        ("UPDATE users SET name=%s WHERE users.id = %s", "UPDATE", "users"),
        ("DELETE FROM addresses WHERE addresses.user_id = $1", "DELETE", "addresses"),
        ("COPY import_rows (name, email) FROM STDIN", "COPY", "import_rows"),
        ("SELECT count(*) FROM (SELECT id FROM users) AS sub", "SELECT", "users"),
        ("SELECT 1", "SELECT", ""),
        ("SELECT 'a@example.com' FROM users", "SELECT", "users"),
    ],
)
def test_a_statement_span_is_named_by_operation_and_table_only(
    statement: str, operation: str, table: str
) -> None:
    assert described(statement) == (operation, table)
