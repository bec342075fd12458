"""README.md, "Watching changes": its three grpcurl commands, run with the real grpcurl.

The section shows them as `$ grpcurl ...` lines in ```console blocks (not ```sh: they
run in two terminals at once, so tests/process/test_readme.py leaves them alone): a
watch with `-v` (which prints the `resume-token` response header), a CreateUser, and a
resume with a `resume_token`. They are read from README.md, never copied here; the
address localhost:50051 becomes the test server's, and the resume's token the one the
watch printed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from users.v1 import resources_pb2, user_service_pb2

from tests.backends import fresh_database, selected_backends
from tests.process.server_process import ServerProcess, free_port
from tests.process.test_readme import README, README_TARGET, fenced_blocks, grpcurl_binary
from tests.rpc import UserStub

SECTION = "### Watching changes"
PROMPT = "$ "
WATCH_METHOD = "users.v1.UserService/WatchUsers"
CREATE_METHOD = "users.v1.UserService/CreateUser"
WAIT_SECONDS = 10.0
# grpcurl -v prints the response headers, one `name: value` line each, under this.
HEADERS_SHOWN = re.compile(r"^Response headers received:\n(?:[^\n]+\n)*?resume-token: (\S+)$", re.M)
# grpcurl pretty-prints each message as a JSON object whose braces start a line.
OBJECT_START = re.compile(r"^\{", re.M)

Json = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Command:
    line: str  # as README.md shows it, without the prompt
    argv: list[str]
    request: Json  # the -d JSON

    @property
    def method(self) -> str:
        return self.argv[-1]


@dataclass(frozen=True)
class WatchCommands:
    watch: Command
    create: Command
    resume: Command


def section_of(text: str, heading: str) -> list[str]:
    """The heading's lines up to the next heading of its level or above (outside code)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    assert starts, f"README.md has no {heading!r} section"
    level = len(heading) - len(heading.lstrip("#"))
    fenced = False
    for end in range(starts[0] + 1, len(lines)):
        line = lines[end]
        fenced ^= line.startswith("```")
        hashes = len(line) - len(line.lstrip("#"))
        if not fenced and 0 < hashes <= level and line[hashes : hashes + 1] == " ":
            return lines[starts[0] : end]
    return lines[starts[0] :]


def command_of(line: str) -> Command:
    argv = shlex.split(line)
    assert argv[0] == "grpcurl", line
    assert README_TARGET in argv, f"{line}: address {README_TARGET}"
    assert "-d" in argv, f"{line}: a request with -d"
    request = json.loads(argv[argv.index("-d") + 1])
    assert isinstance(request, dict), line
    return Command(line, argv, request)


def watch_commands(text: str) -> WatchCommands:
    """The section's three commands, by what they do, in the order they run."""
    section = section_of(text, SECTION)
    lines = [
        line.removeprefix(PROMPT).strip()
        for block in fenced_blocks(section)
        if block.language == "console"
        for line in block.body
        if line.startswith(f"{PROMPT}grpcurl ")
    ]
    commands = [command_of(line) for line in lines]
    shown = "\n".join(lines) or "(none)"
    assert len(commands) == 3, f"{SECTION}: expected 3 `$ grpcurl` commands, found\n{shown}"
    watch, create, resume = commands
    assert watch.method == WATCH_METHOD and "resume_token" not in watch.request, (
        f"{SECTION}: the first command watches from now:\n{watch.line}"
    )
    assert "-v" in watch.argv, f"{SECTION}: the watch prints its headers (-v):\n{watch.line}"
    assert watch.request.get("email_domain"), f"{SECTION}: the watch filters a domain"
    assert create.method == CREATE_METHOD, f"{SECTION}: the second command creates:\n{create.line}"
    assert resume.method == WATCH_METHOD and resume.request.get("resume_token"), (
        f"{SECTION}: the third command resumes with a resume_token:\n{resume.line}"
    )
    assert resume.request.get("email_domain") == watch.request["email_domain"], resume.line
    return WatchCommands(watch, create, resume)


def runnable(command: Command, target: str, request: Json | None = None) -> list[str]:
    """The README's argv for the real grpcurl at `target`, with `request` as its -d."""
    argv = [grpcurl_binary(), *command.argv[1:]]
    argv[argv.index(README_TARGET)] = target
    if request is not None:
        argv[argv.index("-d") + 1] = json.dumps(request)
    return argv


def printed_objects(text: str) -> list[Json]:
    """The JSON objects grpcurl printed so far, in order; an object still being printed
    is left for later. Verbose lines between them (-v) are skipped."""
    decoder = json.JSONDecoder()
    found: list[Json] = []
    position = 0
    while (start := OBJECT_START.search(text, position)) is not None:
        try:
            value, position = decoder.raw_decode(text, start.start())
        except json.JSONDecodeError:
            break  # incomplete: the rest has not been written yet
        assert isinstance(value, dict), f"not a JSON object: {value!r}"
        found.append(value)
    return found


def header_token_in(text: str) -> str | None:
    shown = HEADERS_SHOWN.search(text)
    return shown.group(1) if shown else None


def token_of(change: Json) -> str:
    # grpcurl 1.8 prints the proto field names; newer ones may print lowerCamelCase.
    token = change.get("resume_token", change.get("resumeToken"))
    assert isinstance(token, str) and token, f"no resume token in {change}"
    return token


class Grpcurl:
    """A grpcurl running in the background; what it printed so far, both streams."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._out = bytearray()
        self._err = bytearray()
        assert process.stdout is not None and process.stderr is not None
        self._pumps = [
            asyncio.create_task(self._pump(process.stdout, self._out)),
            asyncio.create_task(self._pump(process.stderr, self._err)),
        ]

    @staticmethod
    async def _pump(stream: asyncio.StreamReader, into: bytearray) -> None:
        while chunk := await stream.read(65536):
            into.extend(chunk)

    @property
    def stdout(self) -> str:
        return self._out.decode("utf-8", errors="replace")

    @property
    def printed(self) -> str:
        return f"stdout:\n{self.stdout}\nstderr:\n{self._err.decode('utf-8', errors='replace')}"

    async def until(self, found: Callable[[], T | None], what: str) -> T:
        """Waits until `found` returns something; fails if grpcurl exits first."""
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while (value := found()) is None:
                    if self.process.returncode is not None:
                        await asyncio.gather(*self._pumps)
                        if (value := found()) is not None:
                            return value
                        raise AssertionError(
                            f"grpcurl exited {self.process.returncode} before {what}:\n"
                            f"{self.printed}"
                        )
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"no {what} within {WAIT_SECONDS} s:\n{self.printed}") from None
        return value

    async def interrupt(self) -> None:
        """Ctrl-C, as the README says; then everything it printed is read."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                await self.process.wait()
                await asyncio.gather(*self._pumps)
        except TimeoutError:
            raise AssertionError(f"grpcurl outlived SIGINT:\n{self.printed}") from None

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        for pump in self._pumps:
            pump.cancel()


@asynccontextmanager
async def running(argv: list[str], workdir: Path) -> AsyncIterator[Grpcurl]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    grpcurl = Grpcurl(process)
    try:
        yield grpcurl
    finally:
        grpcurl.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT_SECONDS):
                await process.wait()


async def run_to_end(argv: list[str], workdir: Path) -> str:
    async with running(argv, workdir) as grpcurl:
        try:
            async with asyncio.timeout(WAIT_SECONDS * 3):
                code = await grpcurl.process.wait()
        except TimeoutError:
            raise AssertionError(f"{argv} did not end:\n{grpcurl.printed}") from None
        await grpcurl.interrupt()
        assert code == 0, f"{argv} exited {code}:\n{grpcurl.printed}"
        return grpcurl.stdout


def test_the_section_names_its_commands() -> None:
    """A section that lost a command fails here, with what it holds, not mid-run."""
    commands = watch_commands(README.read_text(encoding="utf-8"))
    assert (
        commands.create.request["user"]["email"]
        .lower()
        .endswith("@" + commands.watch.request["email_domain"].lower())
    ), f"{SECTION}: the user created is in the watched domain:\n{commands.create.line}"


@pytest.mark.parametrize("backend", selected_backends())
async def test_readme_watch_create_and_resume_with_grpcurl(tmp_path: Path, backend: str) -> None:
    commands = watch_commands(README.read_text(encoding="utf-8"))
    domain = str(commands.watch.request["email_domain"]).lower()
    email = str(commands.create.request["user"]["email"]).lower()
    async with fresh_database(backend, tmp_path) as url:
        port = free_port()
        args = ("--port", str(port), "--database-url", url)
        with ServerProcess(tmp_path, args, port=port) as process:
            target = f"localhost:{port}"
            async with running(runnable(commands.watch, target), tmp_path) as watch:
                # Headers first: once printed, the watch is on and sees what comes next.
                header_token = await watch.until(
                    lambda: header_token_in(watch.stdout), "resume-token response header"
                )
                [created] = printed_objects(
                    await run_to_end(runnable(commands.create, target), tmp_path)
                )
                assert created["email"] == email, created
                [change] = await watch.until(
                    lambda: printed_objects(watch.stdout) or None, "change printed"
                )
                await watch.interrupt()
                assert printed_objects(watch.stdout) == [change], watch.printed
            assert change["type"] == "TYPE_CREATED", change
            assert change["user"]["id"] == created["id"], change
            assert change["user"]["email"] == email, change
            token = token_of(change)
            assert token != header_token, "the header says where the watch started"

            # Another change while nobody watches: the resume prints it, and only it.
            async with grpc.aio.insecure_channel(process.target) as channel:
                later = await UserStub(channel).CreateUser(
                    user_service_pb2.CreateUserRequest(
                        user=resources_pb2.User(
                            name="Lee", email=f"lee-{uuid.uuid4().hex[:8]}@{domain}"
                        )
                    ),
                    timeout=WAIT_SECONDS,
                )
            resume = runnable(
                commands.resume, target, {**commands.resume.request, "resume_token": token}
            )
            async with running(resume, tmp_path) as resumed:
                [missed] = await resumed.until(
                    lambda: printed_objects(resumed.stdout) or None, "change printed"
                )
                await resumed.interrupt()
                assert printed_objects(resumed.stdout) == [missed], resumed.printed
            assert missed["type"] == "TYPE_CREATED", missed
            assert missed["user"]["id"] == str(later.id), missed
            assert missed["user"]["email"] == later.email, missed
            assert token_of(missed) != token
