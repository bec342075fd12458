"""`python -m service export|import|watch` as subprocesses against a real server on every
backend: file formats, exit codes, one-line summaries, bad rows, SIGINT."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

import users_client
from service.server import RunningServer
from tests.process.server_process import service_command, service_env
from users_client import NewUser, UsersClient

WAIT_SECONDS = 30.0
ESCAPE = "\x1b"


@dataclass(frozen=True)
class Done:
    code: int
    stdout: str
    stderr: str


def fresh_domain() -> str:
    return f"k{uuid.uuid4().hex[:10]}.example"


@pytest.fixture
def target(running: RunningServer) -> str:
    return f"127.0.0.1:{running.port}"


@pytest.fixture
async def client(target: str) -> AsyncIterator[UsersClient]:
    async with UsersClient(target) as opened:
        yield opened


async def run_command(workdir: Path, *args: str, stdin: str | None = None) -> Done:
    # The server under test runs on this event loop: the command must not block it.
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
    return Done(process.returncode, out.decode(), err.decode())


def summary_only(done: Done, verb: str, count: int) -> None:
    """stderr is not a terminal here: the summary line and nothing else, no escapes."""
    text = done.stdout if verb == "imported" else done.stderr
    assert ESCAPE not in done.stderr + done.stdout
    assert text.startswith(f"{verb} {count:,} users in "), done
    assert text.count("\n") == 1, done


async def test_export_writes_json_lines_and_csv(
    client: UsersClient, target: str, tmp_path: Path
) -> None:
    domain = fresh_domain()
    await client.batch_create_users(
        [NewUser("Ann", f"ann@{domain}", (f"a2@{domain}",)), NewUser("Bo, Jr", f"bo@{domain}")]
    )
    users = [u async for u in client.stream_users(email_domain=domain, view=users_client.FULL)]

    done = await run_command(
        tmp_path, "export", "--target", target, "--email-domain", domain, "--view", "full"
    )
    assert done.code == 0, done
    summary_only(done, "exported", 2)
    assert done.stdout.splitlines() == [
        json_format.MessageToJson(u, indent=None, ensure_ascii=False) for u in users
    ]

    done = await run_command(
        tmp_path, "export", "--target", target, "--email-domain", domain, "--format", "csv",
        "-o", "users.csv",
    )  # fmt: skip
    assert (done.code, done.stdout) == (0, ""), done
    summary_only(done, "exported", 2)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "users.csv").read_text())))
    assert [(r["id"], r["name"], r["email"]) for r in rows] == [
        (str(u.id), u.name, u.email) for u in users
    ]
    assert list(rows[0]) == ["id", "name", "email", "create_time", "update_time"]


async def test_import_reads_json_lines_csv_and_stdin(
    client: UsersClient, target: str, tmp_path: Path
) -> None:
    domain = fresh_domain()
    exported = [
        {
            "id": "99",
            "name": f"J{i}",
            "email": f"j{i}@{domain}",
            "createTime": "2020-01-01T00:00:00Z",
        }
        for i in range(3)
    ]
    (tmp_path / "users.jsonl").write_text("".join(json.dumps(row) + "\n" for row in exported))
    (tmp_path / "users.csv").write_text(f'name,email\nC0,c0@{domain}\n"C, 1",c1@{domain}\n')

    done = await run_command(tmp_path, "import", "users.jsonl", "--target", target)
    assert done.code == 0, done
    summary_only(done, "imported", 3)
    done = await run_command(tmp_path, "import", "users.csv", "--target", target)
    assert done.code == 0, done
    summary_only(done, "imported", 2)
    done = await run_command(
        tmp_path,
        "import",
        "-",
        "--target",
        target,
        stdin=f'{{"name": "S", "email": "s@{domain}"}}\n',
    )
    assert done.code == 0, done
    summary_only(done, "imported", 1)

    names = [u.name async for u in client.list_users(email_domain=domain)]
    assert names == ["J0", "J1", "J2", "C0", "C, 1", "S"]


async def test_a_bad_row_is_its_line_and_field_and_nothing_is_written(
    client: UsersClient, target: str, tmp_path: Path
) -> None:
    domain = fresh_domain()
    taken = await client.create_user("Taken", f"taken@{domain}")
    (tmp_path / "bad.csv").write_text(f"name,email\nA,a@{domain}\n\nB,not-an-email\nC,c@{domain}\n")
    done = await run_command(tmp_path, "import", "bad.csv", "--target", target)
    assert done.code == 1, done
    assert done.stderr.startswith("line 4: email: "), done
    assert done.stdout == ""

    stdin = f'{{"name": "D", "email": "d@{domain}"}}\n{{"name": "E", "email": "{taken.email}"}}\n'
    done = await run_command(tmp_path, "import", "-", "--target", target, stdin=stdin)
    assert done.code == 1, done
    assert done.stderr.startswith(f"line 2: email: the email {taken.email} is already taken"), done

    assert [u.id async for u in client.list_users(email_domain=domain)] == [taken.id]


async def test_watch_prints_changes_until_sigint_then_its_resume_token(
    client: UsersClient, target: str, tmp_path: Path
) -> None:
    domain = fresh_domain()
    first = await watch_command(tmp_path, target, domain)
    out = err = b""
    try:
        # A watch starts from now: create until the command shows it is on.
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                await client.create_user("W", f"w{uuid.uuid4().hex[:6]}@{domain}")
                try:
                    line = await asyncio.wait_for(read_line(first), 0.5)
                except TimeoutError:
                    continue
                break
            first.send_signal(signal.SIGINT)
            out, err = await first.communicate()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    assert first.returncode == 0, err
    printed = [json.loads(text) for text in [line, *out.decode().splitlines()]]
    assert printed[0]["type"] == "TYPE_CREATED"
    token = printed[-1]["resumeToken"]
    assert err.decode() == f"resume-token: {token}\n"

    user_id = int(printed[0]["user"]["id"])
    await client.update_user(user_id, name="W2")
    second = await watch_command(tmp_path, target, domain, "--resume-token", token)
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT_SECONDS):
        # Creates the first watch was stopped before printing come first, then the update.
        while not seen or seen[-1]["type"] != "TYPE_UPDATED":
            seen.append(json.loads(await read_line(second)))
        second.send_signal(signal.SIGTERM)
        _, err = await second.communicate()
    assert second.returncode == 0, err
    assert (seen[-1]["user"]["id"], seen[-1]["user"]["name"]) == (str(user_id), "W2")
    assert not {c["resumeToken"] for c in seen} & {c["resumeToken"] for c in printed}
    assert err.decode() == f"resume-token: {seen[-1]['resumeToken']}\n"


async def read_line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    line = await process.stdout.readline()
    assert line, "the watch ended"
    return line.decode()


async def watch_command(
    workdir: Path, target: str, domain: str, *extra: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *service_command("watch", "--target", target, "--email-domain", domain, *extra),
        cwd=workdir,
        env=service_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
