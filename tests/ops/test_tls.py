"""--tls-cert-file/--tls-key-file serve TLS; --tls-client-ca-file requires client certs."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from users.v1 import resources_pb2, user_service_pb2, user_service_pb2_grpc

from tests.ops.certificates import Certificates, Pair, make_certificates
from tests.process.server_process import (
    ServerProcess,
    free_port,
    service_command,
    service_env,
    sqlite_url,
)

GRPCURL = Path(sys.executable).parent / "grpcurl"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def credentials(certificates: Certificates, client: Pair | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=certificates.ca.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


def serving(target: str, channel_credentials: grpc.ChannelCredentials) -> bool:
    with grpc.secure_channel(target, channel_credentials) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return True


@pytest.fixture
def tls_server(tmp_path: Path, certificates: Certificates) -> Iterator[ServerProcess]:
    yield from _server(tmp_path, certificates, mutual=False)


@pytest.fixture
def mtls_server(tmp_path: Path, certificates: Certificates) -> Iterator[ServerProcess]:
    yield from _server(tmp_path, certificates, mutual=True)


class TlsServerProcess(ServerProcess):
    """Waits for health over TLS: the plaintext probe of ServerProcess cannot connect."""

    def __init__(self, *args: Any, probe: grpc.ChannelCredentials, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._probe = probe

    def wait_until_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not serving(self.target, self._probe):
            assert time.monotonic() < deadline, f"not serving over TLS:\n{self.stderr}"
            time.sleep(0.1)


def _server(tmp_path: Path, certificates: Certificates, *, mutual: bool) -> Iterator[ServerProcess]:
    port = free_port()
    args = [
        *("--port", str(port), "--database-url", sqlite_url(tmp_path / "users.db")),
        *("--tls-cert-file", str(certificates.server.cert)),
    ]
    # The key comes from the environment: every flag has its fallback.
    env = {"TLS_KEY_FILE": str(certificates.server.key)}
    if mutual:
        args += ["--tls-client-ca-file", str(certificates.ca)]
    probe = credentials(certificates, certificates.client if mutual else None)
    with TlsServerProcess(tmp_path, args, port=port, env=env, probe=probe) as process:
        yield process
        assert process.terminate(10) == 0, process.stderr


def create_user(target: str, channel_credentials: grpc.ChannelCredentials) -> resources_pb2.User:
    with grpc.secure_channel(target, channel_credentials) as channel:
        return user_service_pb2_grpc.UserServiceStub(channel).CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(name="Tls", email=f"tls{time.monotonic_ns()}@example.com")
            ),
            timeout=10,
        )


def grpcurl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRPCURL, *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )


def test_tls_serves_trusting_clients_and_grpcurl_with_cacert(
    tls_server: ServerProcess, certificates: Certificates
) -> None:
    target = tls_server.target
    assert create_user(target, credentials(certificates)).id > 0
    # A plaintext client cannot talk to a TLS server.
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as plain:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert plain.value.code() == grpc.StatusCode.UNAVAILABLE

    port = target.rsplit(":", 1)[1]
    listed = grpcurl("-cacert", certificates.ca, f"localhost:{port}", "list")
    assert listed.returncode == 0, listed.stderr
    assert "users.v1.UserService" in listed.stdout.split()
    health = grpcurl(
        *("-cacert", certificates.ca, "-d", '{"service": "users.v1.UserService"}'),
        *(f"localhost:{port}", "grpc.health.v1.Health/Check"),
    )
    assert health.returncode == 0, health.stderr
    assert '"SERVING"' in health.stdout
    # grpcurl does not trust the server without the CA.
    assert grpcurl(f"localhost:{port}", "list").returncode != 0


def test_mtls_requires_a_client_certificate_from_the_trusted_ca(
    mtls_server: ServerProcess, certificates: Certificates
) -> None:
    target = mtls_server.target
    assert create_user(target, credentials(certificates, certificates.client)).id > 0
    for client in (None, certificates.stranger):
        with pytest.raises(grpc.RpcError) as refused:
            create_user(target, credentials(certificates, client))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    port = target.rsplit(":", 1)[1]
    client = certificates.client
    listed = grpcurl(
        *("-cacert", certificates.ca, "-cert", client.cert, "-key", client.key),
        *(f"localhost:{port}", "list"),
    )
    assert listed.returncode == 0, listed.stderr
    assert "users.v1.AddressService" in listed.stdout.split()
    assert grpcurl("-cacert", certificates.ca, f"localhost:{port}", "list").returncode != 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(
            ("--tls-cert-file", "cert.pem"),
            "--tls-cert-file and --tls-key-file go together: give both",
            id="cert-without-key",
        ),
        pytest.param(
            ("--tls-client-ca-file", "ca.pem"),
            "--tls-client-ca-file needs --tls-cert-file and --tls-key-file",
            id="ca-without-cert",
        ),
        pytest.param(
            ("--tls-cert-file", "missing.pem", "--tls-key-file", "missing.key"),
            "cannot read --tls-key-file missing.key: No such file or directory",
            id="missing-files",
        ),
    ],
)
def test_unusable_tls_settings_are_one_line_at_start(
    tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    done = subprocess.run(
        service_command(
            *("serve", "--port", str(free_port()), *flags),
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
    assert done.stderr.strip().splitlines()[-1] == f"users-service: error: {message}", done.stderr
