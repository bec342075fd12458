"""One log line per call (method, code, duration, peer), never a body or a token;
unforeseen errors: traceback in the log, a generic INTERNAL for the client."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from users.v1 import resources_pb2, user_service_pb2, user_service_pb2_grpc

from service import server
from service.api.auth import digest_of
from service.config import Settings
from service.db.errors import connection_lost
from service.domain import users as users_use_cases
from service.logs import (
    GRPC_CORE_LOGGER,
    POOL_RESET_FAILED,
    ClientGoneFilter,
    JsonFormatter,
    LostConnectionFilter,
)
from tests.process.server_process import ServerProcess, free_port, sqlite_url
from tests.rpc import UserStub, create_user, fails

TOKEN = "log-test-token-31c7"
SECRET_NAME = "Zebulon Quixotic"
SECRET_EMAIL = "zebulon.quixotic@example.com"


def make_calls(target: str) -> None:
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.insecure_channel(target) as channel:
        stub = user_service_pb2_grpc.UserServiceStub(channel)
        created = stub.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(name=SECRET_NAME, email=SECRET_EMAIL)
            ),
            metadata=metadata,
            timeout=10,
        )
        stub.GetUser(user_service_pb2.GetUserRequest(id=created.id), metadata=metadata, timeout=10)
        with pytest.raises(grpc.RpcError):
            stub.GetUser(user_service_pb2.GetUserRequest(id=10**12), metadata=metadata, timeout=10)


def served(
    tmp_path: Path, log_format: str, access: tuple[str, ...] = ("--access-log", "all")
) -> str:
    """The server's stderr after make_calls, its access log flags `access`."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"write {digest_of(TOKEN)}\n")
    port = free_port()
    args = [
        *("--port", str(port), "--database-url", sqlite_url(tmp_path / f"{log_format}.db")),
        *("--log-format", log_format, "--auth-tokens-file", str(tokens)),
        *access,
    ]
    with ServerProcess(tmp_path, args, port=port) as process:
        make_calls(process.target)
        assert process.terminate(10) == 0, process.stderr
    stderr = process.stderr
    for secret in (TOKEN, SECRET_NAME, SECRET_EMAIL, digest_of(TOKEN)):
        assert secret not in stderr
    return stderr


def test_json_logs_have_one_line_per_call_and_no_bodies_or_tokens(tmp_path: Path) -> None:
    stderr = served(tmp_path, "json")
    # grpc's own C core may write plain lines; every line of ours is a JSON object.
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    calls = [line for line in lines if line["logger"] == "users.calls"]
    assert [(c["method"], c["code"]) for c in calls] == [
        ("/users.v1.UserService/CreateUser", "OK"),
        ("/users.v1.UserService/GetUser", "OK"),
        ("/users.v1.UserService/GetUser", "NOT_FOUND"),
    ]
    for call in calls:
        assert call["duration_ms"] > 0
        assert call["peer"].startswith(("ipv4:127.0.0.1:", "ipv6:"))
        assert call["level"] == "info" and call["time"]


def call_lines(workdir: Path, access: tuple[str, ...]) -> list[str]:
    workdir.mkdir()
    return [
        line for line in served(workdir, "text", access).splitlines() if " users.calls: " in line
    ]


def test_by_default_only_failed_and_slow_calls_get_a_line(tmp_path: Path) -> None:
    # make_calls: CreateUser and GetUser succeed, then a GetUser of an unknown id fails.
    for access in ((), ("--access-log", "errors")):
        logged = call_lines(tmp_path / str(len(access)), access)
        assert len(logged) == 1, logged
        assert "/users.v1.UserService/GetUser NOT_FOUND" in logged[0], logged
    slow = call_lines(tmp_path / "slow", ("--slow-call-ms", "0"))
    assert [line.split(" users.calls: ")[1].split(" ")[1] for line in slow] == [
        "OK",
        "OK",
        "NOT_FOUND",
    ]
    assert call_lines(tmp_path / "off", ("--access-log", "off")) == []


def test_text_logs_have_one_line_per_call(tmp_path: Path) -> None:
    stderr = served(tmp_path, "text")
    calls = [line for line in stderr.splitlines() if " users.calls: " in line]
    assert len(calls) == 3, stderr
    assert "/users.v1.UserService/GetUser NOT_FOUND " in calls[2]
    assert " ms peer=ipv4:127.0.0.1:" in calls[2]


@pytest.fixture
async def fragile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[grpc.aio.Channel]:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire at /var/lib/secret")

    monkeypatch.setattr(users_use_cases, "get_user", broken)
    running = await server.start(
        Settings(host="127.0.0.1", port=0, database_url=sqlite_url(tmp_path / "users.db"))
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield channel
    await running.stop(grace=1)


async def test_unforeseen_error_is_generic_internal_with_the_traceback_in_the_log(
    fragile: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    users = UserStub(fragile)
    user = await create_user(users)
    with caplog.at_level(logging.INFO):
        failure = await fails(users.GetUser(user_service_pb2.GetUserRequest(id=user.id)))
    assert failure.code == grpc.StatusCode.INTERNAL
    assert "fire" not in failure.message and "secret" not in failure.message
    assert failure.info is not None and failure.info.reason == "INTERNAL"
    incident = failure.info.metadata["incident"]
    assert incident in failure.message
    logged = [r for r in caplog.records if r.exc_info and incident in r.getMessage()]
    assert len(logged) == 1
    assert "disk on fire" in caplog.text and "Traceback" in caplog.text
    call_lines = [r for r in caplog.records if r.name == "users.calls"]
    assert [r.__dict__["code"] for r in call_lines] == ["INTERNAL"]


def test_json_formatter_puts_the_traceback_in_its_own_field() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("users.test-json")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("kaput")
        except ValueError:
            logger.exception("unexpected error, incident abc")
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["message"] == "unexpected error, incident abc"
    assert "ValueError: kaput" in line["traceback"]


def test_grpc_reporting_a_reply_to_a_client_gone_is_one_info_line_without_traceback() -> None:
    # What grpc logs (with logger.exception) when the status of a call whose client left
    # cannot be sent: an ordinary event, not an error with a stack.
    try:
        raise RuntimeError("Failed execute_batch")
    except RuntimeError:
        record = logging.LogRecord(
            GRPC_CORE_LOGGER,
            logging.ERROR,
            __file__,
            1,
            "ExecuteBatchError raised in core by servicer method [/users.v1.UserService/GetUser]",
            None,
            sys.exc_info(),
        )
    assert ClientGoneFilter().filter(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert record.getMessage() == (
        "a call ended before its reply could be sent (/users.v1.UserService/GetUser)"
    )
    other = logging.LogRecord(GRPC_CORE_LOGGER, logging.ERROR, __file__, 1, "boom", None, None)
    assert ClientGoneFilter().filter(other) and other.levelno == logging.ERROR


def test_a_reset_that_fails_for_another_reason_stays_an_error() -> None:
    def record_of(error: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "sqlalchemy.pool.impl.AsyncAdaptedQueuePool",
            logging.ERROR,
            __file__,
            1,
            POOL_RESET_FAILED,
            None,
            (type(error), error, None),
        )

    lost = record_of(ConnectionResetError("connection reset by peer"))
    assert LostConnectionFilter(connection_lost).filter(lost)
    assert lost.levelno == logging.WARNING and lost.exc_info is None
    misused = record_of(RuntimeError("another operation is in progress"))
    assert LostConnectionFilter(connection_lost).filter(misused)
    assert misused.levelno == logging.ERROR and misused.exc_info is not None
