"""users_client and the operator commands against a server with auth tokens and TLS:
the token goes as a bearer header, `--tls-ca-file` trusts the test CA, and the server's
refusals arrive as typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import users_client
from service import server
from service.config import Settings
from tests.ops.certificates import Certificates, make_certificates
from tests.ops.test_auth import write_tokens
from tests.process.server_process import service_command, service_env, sqlite_url
from users_client import UsersClient, tls_from_ca_file

READ_TOKEN = "client-read-5d0e"
WRITE_TOKEN = "client-write-8b1f"
WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture
async def target(tmp_path: Path, certificates: Certificates) -> AsyncIterator[str]:
    tokens = write_tokens(tmp_path / "tokens", ("read", READ_TOKEN), ("write", WRITE_TOKEN))
    settings = Settings(
        host="127.0.0.1",
        port=0,
        database_url=sqlite_url(tmp_path / "users.db"),
        auth_tokens_file=str(tokens),
        tls_cert_file=str(certificates.server.cert),
        tls_key_file=str(certificates.server.key),
    )
    running = await server.start(settings)
    yield f"localhost:{running.port}"
    await running.stop(grace=1)


async def test_the_client_sends_its_token_over_tls(target: str, certificates: Certificates) -> None:
    tls = tls_from_ca_file(str(certificates.ca))
    async with UsersClient(target, token=WRITE_TOKEN, tls=tls) as writer:
        created = await writer.create_user("Tls", "tls@client.example")
    async with UsersClient(target, token=READ_TOKEN, tls=tls) as reader:
        assert (await reader.get_user(created.id)).email == "tls@client.example"
        with pytest.raises(users_client.PermissionDeniedError) as denied:
            await reader.delete_user(created.id)
        assert denied.value.reason == "PERMISSION_DENIED"
    async with UsersClient(target, tls=tls) as anonymous:
        with pytest.raises(users_client.UnauthenticatedError) as refused:
            await anonymous.get_user(created.id)
        assert refused.value.reason == "UNAUTHENTICATED"


async def test_the_commands_take_token_and_tls_ca_file(
    target: str, certificates: Certificates, tmp_path: Path
) -> None:
    flags = ("--target", target, "--tls-ca-file", str(certificates.ca))
    rows = '{"name": "Imp", "email": "imp@tls.example"}\n'
    code, out, err = await run(tmp_path, "import", "-", *flags, "--token", WRITE_TOKEN, stdin=rows)
    assert (code, out.split(" in ")[0]) == (0, "imported 1 users"), err
    code, out, err = await run(tmp_path, "export", *flags, "--token", READ_TOKEN)
    assert code == 0, err
    assert '"email": "imp@tls.example"' in out
    code, out, err = await run(tmp_path, "export", *flags)
    assert code == 1
    assert err.startswith("users-service: error: "), err


async def run(workdir: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *service_command(*args),
        cwd=workdir,
        env=service_env(),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WAIT_SECONDS):
        out, err = await process.communicate(stdin.encode() if stdin is not None else None)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
