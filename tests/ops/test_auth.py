"""--auth-tokens-file: UNAUTHENTICATED, PERMISSION_DENIED before NOT_FOUND, open health."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from users.v1 import resources_pb2, user_service_pb2, user_service_pb2_grpc

from service import server
from service.api.auth import digest_of
from service.config import Settings
from tests.process.server_process import (
    ServerProcess,
    free_port,
    service_command,
    service_env,
    sqlite_url,
)
from tests.rpc import UserStub, fails, fresh_email

READ_TOKEN = "read-token-9f2c41d0"
WRITE_TOKEN = "write-token-77ab13e5"


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def write_tokens(path: Path, *lines: tuple[str, str]) -> Path:
    path.write_text("# role sha256-of-token\n" + "".join(f"{r} {digest_of(t)}\n" for r, t in lines))
    return path


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[tuple[server.RunningServer, grpc.aio.Channel]]:
    tokens = write_tokens(tmp_path / "tokens", ("read", READ_TOKEN), ("write", WRITE_TOKEN))
    settings = Settings(
        host="127.0.0.1",
        port=0,
        database_url=sqlite_url(tmp_path / "users.db"),
        auth_tokens_file=str(tokens),
    )
    running = await server.start(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield running, channel
    await running.stop(grace=1)


def new_user_request() -> user_service_pb2.CreateUserRequest:
    return user_service_pb2.CreateUserRequest(
        user=resources_pb2.User(name="Ana", email=fresh_email())
    )


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param((), id="no-header"),
        pytest.param(bearer("not-a-token"), id="unknown-token"),
        pytest.param(bearer(""), id="empty-token"),
        pytest.param((("authorization", f"Basic {WRITE_TOKEN}"),), id="other-scheme"),
        pytest.param((("authorization", WRITE_TOKEN),), id="no-scheme"),
    ],
)
async def test_missing_or_wrong_credentials_are_unauthenticated(
    guarded: tuple[server.RunningServer, grpc.aio.Channel], metadata: tuple[tuple[str, str]]
) -> None:
    _, channel = guarded
    users = UserStub(channel)
    for call in (
        users.GetUser(user_service_pb2.GetUserRequest(id=1), metadata=metadata),
        users.CreateUser(new_user_request(), metadata=metadata),
    ):
        failure = await fails(call)
        assert failure.code == grpc.StatusCode.UNAUTHENTICATED, failure.message
        assert failure.info is not None
        assert (failure.info.domain, failure.info.reason) == ("users.v1", "UNAUTHENTICATED")
        assert WRITE_TOKEN not in failure.message


async def test_read_token_reads_and_is_denied_writes_before_not_found(
    guarded: tuple[server.RunningServer, grpc.aio.Channel],
) -> None:
    _, channel = guarded
    users = UserStub(channel)
    user = await users.CreateUser(new_user_request(), metadata=bearer(WRITE_TOKEN))
    read = bearer(READ_TOKEN)
    got = await users.GetUser(user_service_pb2.GetUserRequest(id=user.id), metadata=read)
    assert got == user
    listed = await users.ListUsers(user_service_pb2.ListUsersRequest(), metadata=read)
    assert user in listed.users
    missing = await fails(users.GetUser(user_service_pb2.GetUserRequest(id=10**12), metadata=read))
    assert missing.code == grpc.StatusCode.NOT_FOUND

    for call in (
        users.CreateUser(new_user_request(), metadata=read),
        users.DeleteUser(user_service_pb2.DeleteUserRequest(id=10**12), metadata=read),
        users.UpdateUser(
            user_service_pb2.UpdateUserRequest(user=resources_pb2.User(id=10**12, name="X")),
            metadata=read,
        ),
    ):
        failure = await fails(call)
        assert failure.code == grpc.StatusCode.PERMISSION_DENIED, failure.message
        assert failure.info is not None
        assert (failure.info.domain, failure.info.reason) == ("users.v1", "PERMISSION_DENIED")
    # Nothing was written or deleted by the denied calls.
    assert await users.GetUser(user_service_pb2.GetUserRequest(id=user.id), metadata=read) == user


async def test_write_token_may_write_and_read(
    guarded: tuple[server.RunningServer, grpc.aio.Channel],
) -> None:
    _, channel = guarded
    users = UserStub(channel)
    write = bearer(WRITE_TOKEN)
    user = await users.CreateUser(new_user_request(), metadata=write)
    got = await users.GetUser(user_service_pb2.GetUserRequest(id=user.id), metadata=write)
    assert got == user


async def test_health_and_reflection_need_no_token(
    guarded: tuple[server.RunningServer, grpc.aio.Channel],
) -> None:
    _, channel = guarded
    checked = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=server.USER_SERVICE)
    )
    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for response in reflect.ServerReflectionInfo(iter([request])):
        names = {s.name for s in response.list_services_response.service}
        assert server.USER_SERVICE in names


def test_sighup_rereads_the_tokens_file_and_tokens_are_never_logged(tmp_path: Path) -> None:
    old, new = "old-token-5d1e", "new-token-c0a9"
    tokens = write_tokens(tmp_path / "tokens", ("write", old))
    port = free_port()
    args = (
        *("--port", str(port), "--database-url", sqlite_url(tmp_path / "users.db")),
        *("--auth-tokens-file", str(tokens), "--log-format", "json"),
    )
    with ServerProcess(tmp_path, args, port=port) as process:
        with grpc.insecure_channel(process.target) as channel:
            users = user_service_pb2_grpc.UserServiceStub(channel)

            def code_with(token: str) -> grpc.StatusCode:
                try:
                    users.CreateUser(new_user_request(), metadata=bearer(token), timeout=10)
                except grpc.RpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

            assert code_with(old) == grpc.StatusCode.OK
            write_tokens(tokens, ("write", new))
            os.kill(process.pid, signal.SIGHUP)
            deadline = time.monotonic() + 5
            while code_with(new) != grpc.StatusCode.OK:
                assert time.monotonic() < deadline, process.stderr
                time.sleep(0.05)
            assert code_with(old) == grpc.StatusCode.UNAUTHENTICATED
            # A broken file keeps the tokens in force.
            tokens.write_text("admin 1234\n")
            os.kill(process.pid, signal.SIGHUP)
            time.sleep(0.3)
            assert code_with(new) == grpc.StatusCode.OK
        assert process.terminate(10) == 0
    assert "kept the previous tokens" in process.stderr
    for secret in (old, new):
        assert secret not in process.stderr


def test_unusable_tokens_file_is_one_line_at_start(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"write {digest_of(WRITE_TOKEN)}\nroot {digest_of(READ_TOKEN)}\n")
    done = subprocess.run(
        service_command(
            *("serve", "--port", str(free_port()), "--auth-tokens-file", str(tokens)),
            *("--database-url", sqlite_url(tmp_path / "users.db")),
        ),
        cwd=tmp_path,
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "tokens:2: expected '<read|write> <sha256-hex-of-token>' "
            "(64 hex digits, e.g. from `printf %s TOKEN | sha256sum`)"
        )
    ), done.stderr
    assert "Traceback" not in done.stderr
