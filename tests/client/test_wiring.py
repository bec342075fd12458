"""users_client without a server: its error table against the server's, the published
service config, request ids, and the file formats of export and import."""

from __future__ import annotations

import inspect
import io
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2
from users.v1 import resources_pb2

from service.api import errors as transport_errors
from service.api.status import code_for
from service.domain import errors as domain_errors
from users_client import errors
from users_client.files import CsvRows, JsonLines, RowError, read_rows
from users_client.rows import NewUser, create_request, import_messages
from users_client.service_config import service_config_json

ROOT = Path(__file__).resolve().parents[2]
# Reasons that never reach a client (the import use case turns this one into EMAIL_TAKEN).
INTERNAL_ONLY = {"IMPORT_ROW_REPEATED", "DOMAIN_ERROR"}


def server_error_classes() -> list[type[domain_errors.DomainError]]:
    return [
        klass
        for module in (domain_errors, transport_errors)
        for _, klass in inspect.getmembers(module, inspect.isclass)
        if issubclass(klass, domain_errors.DomainError) and "reason" in vars(klass)
    ]


def client_code(klass: type[errors.UsersError]) -> grpc.StatusCode:
    for code, mapped in errors.CODES.items():
        if issubclass(klass, mapped):
            return code
    if issubclass(klass, errors.StaleEtagError | errors.ImportAbortedError):
        return grpc.StatusCode.ABORTED
    raise AssertionError(f"{klass.__name__} has no code")


def test_every_reason_the_server_sends_has_a_class_with_its_code() -> None:
    for server_class in server_error_classes():
        reason = server_class.reason
        if reason in INTERNAL_ONLY:
            continue
        assert reason in errors.REASONS, f"users_client.errors.REASONS has no {reason}"
        assert client_code(errors.REASONS[reason]) == code_for(server_class), reason


def test_the_packaged_service_config_is_the_published_one() -> None:
    published = (ROOT / "deploy" / "grpc" / "service_config.json").read_text("utf-8")
    assert service_config_json() == published


def test_the_client_imports_nothing_of_the_server() -> None:
    probe = (
        "import sys, users_client, users_client.cli; "
        "leaked = [m for m in sys.modules if m == 'service' or m.startswith('service.')]; "
        "assert not leaked, leaked"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=ROOT / "tests")


async def test_creates_carry_a_new_request_id_and_imports_none() -> None:
    row = NewUser("A", "a@example.com")
    first, second = create_request(row), create_request(row)
    assert first.request_id and second.request_id and first.request_id != second.request_id
    assert create_request(NewUser("A", "a@example.com", request_id="mine")).request_id == "mine"
    messages = [m async for m in import_messages([row, row, row], chunk=2)]
    assert [[r.request_id for r in m.requests] for m in messages] == [["", ""], [""]]


def stamp(seconds: int, nanos: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


@pytest.mark.parametrize("nanos", [0, 5_000_000, 123_456_000, 123_456_789])
def test_a_json_line_is_the_proto_json_mapping(nanos: int) -> None:
    user = resources_pb2.User(
        id=42,
        name='Zoë "Q" \\ Ünïcode',
        email="z@example.com",
        addresses=[
            resources_pb2.Address(
                id=7,
                user_id=42,
                email="a@example.com",
                create_time=stamp(1_700_000_000, nanos),
                update_time=stamp(1_700_000_001, nanos),
                etag="e1",
            )
        ],
        create_time=stamp(1_700_000_000, nanos),
        update_time=stamp(1_800_000_000, 0),
        etag="abc",
    )
    basic = resources_pb2.User()
    basic.CopyFrom(user)
    del basic.addresses[:]
    same_times = resources_pb2.User()
    same_times.CopyFrom(basic)
    same_times.update_time.CopyFrom(basic.create_time)
    sparse = resources_pb2.User(id=1, name="B", email="b@example.com")
    users = [user, basic, same_times, sparse]
    expected = "".join(
        json_format.MessageToJson(u, indent=None, ensure_ascii=False) + "\n" for u in users
    )
    assert JsonLines().lines(users) == expected


def test_csv_has_a_header_and_the_five_columns() -> None:
    rows = CsvRows()
    user = resources_pb2.User(
        id=3, name="Smith, Jo", email="j@example.com", create_time=stamp(0, 0), etag="x"
    )
    assert rows.header() + rows.lines([user]) == (
        "id,name,email,create_time,update_time\n"
        '3,"Smith, Jo",j@example.com,1970-01-01T00:00:00Z,1970-01-01T00:00:00Z\n'
    )


def test_import_files_json_lines_and_csv() -> None:
    lines: list[int] = []
    jsonl = (
        '{"id": "9", "name": "A", "email": "a@x.org", "addresses": [{"email": "b@x.org"}]}\n'
        "\n"
        '{"name": "C", "email": "c@x.org", "createTime": "2020-01-01T00:00:00Z"}\n'
    )
    assert list(read_rows(io.StringIO(jsonl), lines)) == [
        NewUser("A", "a@x.org", ("b@x.org",), request_id=""),
        NewUser("C", "c@x.org", request_id=""),
    ]
    assert lines == [1, 3]
    lines = []
    csv_text = 'id,email,name\n1,a@x.org,A\n\n2,b@x.org,"B, b"\n'
    assert list(read_rows(io.StringIO(csv_text), lines)) == [
        NewUser("A", "a@x.org", request_id=""),
        NewUser("B, b", "b@x.org", request_id=""),
    ]
    assert lines == [2, 4]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"name": "A", "email": "a@x.org"}\n{"name": \n', "line 2: json: not valid JSON"),
        ('{"name": "A", "email": "a@x.org"}\n[1]\n', "line 2: json: not a JSON object"),
        ('{"name": 5, "email": "a@x.org"}\n', "line 1: name: must be a string"),
        ("first,email\nA,a@x.org\n", "line 1: header: names no column name"),
        ("name,email\nA,a@x.org\nB\n", "line 3: csv: has 1 columns, the header 2"),
    ],
)
def test_a_bad_import_row_names_its_line_and_field(text: str, message: str) -> None:
    with pytest.raises(RowError) as raised:
        list(read_rows(io.StringIO(text), []))
    assert str(raised.value).startswith(message)
