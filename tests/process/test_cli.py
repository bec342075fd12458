"""`python -m service` as a subprocess: start-up errors, migrate, health, reflection, SIGTERM."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from alembic.script import ScriptDirectory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from sqlalchemy.engine import make_url
from users.v1 import resources_pb2, user_service_pb2, user_service_pb2_grpc

from service.db.migrate import alembic_config
from tests.backends import ADMIN_URLS
from tests.process.server_process import (
    ServerProcess,
    free_port,
    health_status,
    service_command,
    service_env,
    sqlite_url,
)

# API.md: a bad URL or an unreachable database is one line and a non-zero exit, quickly.
STARTUP_FAILURE_SECONDS = 5.0
GRACE_SECONDS = 5.0


def run_service(workdir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        service_command(*args),
        cwd=workdir,
        env=service_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def serve_args(port: int, database: Path, *extra: str) -> tuple[str, ...]:
    return ("--port", str(port), "--database-url", sqlite_url(database), *extra)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        pytest.param("not-a-url", "not-a-url", id="not-a-url"),
        pytest.param("postgresql+asyncpg://postgres@127.0.0.1:1/x", "127.0.0.1:1", id="refused"),
        pytest.param("oracle://x", "oracle", id="unsupported-scheme"),
        pytest.param(
            "postgresql+asyncpg://postgres@127.0.0.1:notaport/x",
            "notaport",
            id="non-numeric-port",
        ),
        pytest.param(
            str(make_url(ADMIN_URLS["postgresql"]).set(database="no_such_db_here")),
            "does not exist",
            id="postgres-unknown-database",
        ),
        pytest.param(
            make_url(ADMIN_URLS["mysql"])
            .set(username="nobody", password="wrong")
            .render_as_string(hide_password=False),
            "Access denied",
            id="mariadb-bad-credentials",
        ),
    ],
)
def test_bad_or_unreachable_database_is_one_stderr_line(
    tmp_path: Path, url: str, named: str
) -> None:
    started = time.monotonic()
    done = run_service(
        tmp_path, "serve", "--port", str(free_port()), "--database-url", url, timeout=30
    )
    elapsed = time.monotonic() - started
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert named in done.stderr
    assert elapsed < STARTUP_FAILURE_SECONDS, f"took {elapsed:.1f} s: {done.stderr}"


def test_migrate_creates_the_schema_on_a_new_sqlite_file(tmp_path: Path) -> None:
    database = tmp_path / "new.db"
    done = run_service(tmp_path, "migrate", "--database-url", sqlite_url(database))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert {"users", "addresses", "request_ids"} <= tables
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
    again = run_service(tmp_path, "migrate", "--database-url", sqlite_url(database))
    assert again.returncode == 0, again.stderr


def test_serve_reports_health_and_reflects_both_services(tmp_path: Path) -> None:
    port = free_port()
    with ServerProcess(tmp_path, serve_args(port, tmp_path / "users.db"), port=port) as server:
        for service in ("", "users.v1.UserService", "users.v1.AddressService"):
            assert health_status(server.target, service) == "SERVING", service
        with grpc.insecure_channel(server.target) as channel:
            reflected = ProtoReflectionDescriptorDatabase(channel)
            services = set(reflected.get_services())
            pool = DescriptorPool(reflected)
            user_service = pool.FindServiceByName("users.v1.UserService")
            address_service = pool.FindServiceByName("users.v1.AddressService")
    assert {"users.v1.UserService", "users.v1.AddressService"} <= services
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
    assert user_service.methods_by_name["CreateUser"].output_type.full_name == "users.v1.User"
    assert "CreateAddress" in address_service.methods_by_name


def test_console_script_help_lists_the_commands_and_flags(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "users-service"
    top = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert top.returncode == 0, top.stderr
    assert "serve" in top.stdout and "migrate" in top.stdout
    serve = subprocess.run([script, "serve", "--help"], capture_output=True, text=True, check=False)
    assert serve.returncode == 0, serve.stderr
    for flag in ("--host", "--port", "--database-url", "--grace-seconds", "--log-format"):
        assert flag in serve.stdout, flag


def test_sigterm_exits_zero_within_grace_and_keeps_acknowledged_write(tmp_path: Path) -> None:
    port = free_port()
    args = serve_args(port, tmp_path / "users.db", "--grace-seconds", str(GRACE_SECONDS))
    user = resources_pb2.User(name="Ana Lima", email="ana@example.com")
    with ServerProcess(tmp_path, args, port=port) as server:
        with grpc.insecure_channel(server.target) as channel:
            created = user_service_pb2_grpc.UserServiceStub(channel).CreateUser(
                user_service_pb2.CreateUserRequest(user=user), timeout=10
            )
        code = server.terminate(timeout=GRACE_SECONDS)
        assert code == 0, server.stderr
        assert "Traceback" not in server.stderr, server.stderr
    with (
        ServerProcess(tmp_path, args, port=port) as restarted,
        grpc.insecure_channel(restarted.target) as channel,
    ):
        fetched = user_service_pb2_grpc.UserServiceStub(channel).GetUser(
            user_service_pb2.GetUserRequest(id=created.id), timeout=10
        )
    assert fetched == created


def test_writes_acknowledged_while_sigterm_arrives_survive_a_restart(tmp_path: Path) -> None:
    port = free_port()
    args = serve_args(port, tmp_path / "users.db", "--grace-seconds", str(GRACE_SECONDS))
    acknowledged: list[resources_pb2.User] = []
    refusals: list[grpc.StatusCode] = []
    lock = threading.Lock()

    def write_until_refused(worker: int, stub: user_service_pb2_grpc.UserServiceStub) -> None:
        for n in range(100_000):
            user = resources_pb2.User(name="Load", email=f"w{worker}-{n}@example.com")
            try:
                created = stub.CreateUser(user_service_pb2.CreateUserRequest(user=user), timeout=10)
            except grpc.RpcError as error:
                with lock:
                    refusals.append(error.code())
                return
            with lock:
                acknowledged.append(created)

    with ServerProcess(tmp_path, args, port=port) as server:
        with grpc.insecure_channel(server.target) as channel:
            stub = user_service_pb2_grpc.UserServiceStub(channel)
            workers = [
                threading.Thread(target=write_until_refused, args=(worker, stub))
                for worker in range(4)
            ]
            for thread in workers:
                thread.start()
            while len(acknowledged) < 20 and all(t.is_alive() for t in workers):
                time.sleep(0.01)
            code = server.terminate(timeout=GRACE_SECONDS)
            for thread in workers:
                thread.join(timeout=30)
        assert code == 0, server.stderr
        assert "Traceback" not in server.stderr, server.stderr
    assert len(acknowledged) >= 20 and len(refusals) == 4, refusals
    # The drain refuses with UNAVAILABLE; a call still queued inside grpc when it stops
    # ends CANCELLED (service/server.py, RunningServer.stop). Neither ran.
    assert set(refusals) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, refusals
    # A refused call wrote nothing: the database holds exactly the acknowledged users.
    with sqlite3.connect(tmp_path / "users.db") as connection:
        (stored,) = connection.execute("SELECT count(*) FROM users").fetchone()
    assert stored == len(acknowledged)
    with (
        ServerProcess(tmp_path, args, port=port) as restarted,
        grpc.insecure_channel(restarted.target) as channel,
    ):
        found = user_service_pb2_grpc.UserServiceStub(channel).BatchGetUsers(
            user_service_pb2.BatchGetUsersRequest(ids=[u.id for u in acknowledged]), timeout=10
        )
    assert list(found.users) == acknowledged


def test_port_falls_back_to_the_port_environment_variable(tmp_path: Path) -> None:
    port = free_port()
    args = ("--database-url", sqlite_url(tmp_path / "users.db"))
    with ServerProcess(tmp_path, args, port=port, env={"PORT": str(port)}) as server:
        assert health_status(server.target) == "SERVING"
        assert f":{port}" in server.stderr


def test_the_server_commands_do_not_import_the_operator_commands(tmp_path: Path) -> None:
    """`serve` and `migrate` leave users_client (a gRPC client, with a terminal library
    of its own) out of the server's memory; `export` & co. are dispatched to it."""
    script = f"""
import sys
from service.cli import main
code = main(["migrate", "--database-url", {sqlite_url(tmp_path / "users.db")!r}])
loaded = sorted({{n.split(".")[0] for n in sys.modules}} & {{"users_client", "rich"}})
print(code, loaded)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "0 []", done.stderr
    exported = run_service(tmp_path, "export", "--help")
    assert exported.returncode == 0 and "--email-domain" in exported.stdout
