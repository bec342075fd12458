"""The files `export` writes and `import` reads: JSON lines and CSV (API.md "Server process").

A JSON line is a user in the proto JSON mapping (what `json_format.MessageToJson` prints,
on one line), written here field by field: the generic printer costs several times the
stream it formats (BENCHMARKS.md, issue 16).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterable, Iterator
from json.encoder import encode_basestring
from typing import IO

from google.protobuf import timestamp_pb2
from users.v1 import resources_pb2

from users_client.rows import NewUser

CSV_COLUMNS = ("id", "name", "email", "create_time", "update_time")
_DAYS_CACHED = 4096


class RowError(ValueError):
    """A row of an import file that cannot become a CreateUserRequest."""

    def __init__(self, line: int, field: str, problem: str) -> None:
        super().__init__(f"line {line}: {field}: {problem}")
        self.line = line
        self.field = field
        self.problem = problem


class _Times:
    """RFC 3339 as the proto JSON mapping prints a Timestamp: 0, 3, 6 or 9 fractional
    digits, UTC, `Z`. Dates and times of day are cached: a million users span a few
    thousand days, and a day has 86,400 seconds."""

    def __init__(self) -> None:
        self.days: dict[int, str] = {}
        self.clocks: dict[int, str] = {}

    def format(self, stamp: timestamp_pb2.Timestamp) -> str:
        return self.text(stamp.seconds, stamp.nanos)

    def date(self, day: int) -> str:
        """`2024-01-31T` for a day since the epoch."""
        if len(self.days) > _DAYS_CACHED:
            self.days.clear()
        date = self.days[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86_400))
        return date

    def text(self, seconds: int, nanos: int) -> str:
        day, second = divmod(seconds, 86_400)
        date = self.days.get(day) or self.date(day)
        clock = self.clocks.get(second) or _clock(self.clocks, second)
        if nanos == 0:
            return f"{date}{clock}Z"
        if nanos % 1000:
            return f"{date}{clock}.{nanos:09d}Z"
        if nanos % 1_000_000:
            return f"{date}{clock}.{nanos // 1000:06d}Z"
        return f"{date}{clock}.{nanos // 1_000_000:03d}Z"


def _clock(clocks: dict[int, str], second: int) -> str:
    """`13:04:05` for a second of the day, remembered in `clocks`."""
    hour, rest = divmod(second, 3600)
    minute, second_ = divmod(rest, 60)
    clock = clocks[second] = f"{hour:02d}:{minute:02d}:{second_:02d}"
    return clock


class JsonLines:
    """Users to JSON lines, one `str` per batch."""

    def __init__(self) -> None:
        self._times = _Times()

    def lines(self, users: Iterable[resources_pb2.User]) -> str:
        """The common case (every field set, no addresses: the BASIC view) in one
        f-string, its times formatted inline (the hot path of a million-user export);
        anything else through `line`."""
        line, encode, date_of, days, clocks = (
            self.line,
            encode_basestring,
            self._times.date,
            self._times.days,
            self._times.clocks,
        )
        out: list[str] = []
        append = out.append
        for user in users:
            name, email, etag = user.name, user.email, user.etag
            created, updated = user.create_time, user.update_time
            seconds, nanos = created.seconds, created.nanos
            u_seconds, u_nanos = updated.seconds, updated.nanos
            if user.addresses or not (name and email and etag and seconds and u_seconds):
                append(line(user))
                continue
            day, second = divmod(seconds, 86_400)
            date = days.get(day) or date_of(day)
            clock = clocks.get(second) or _clock(clocks, second)
            if nanos % 1000 or not nanos % 1_000_000:
                create_time = self._times.text(seconds, nanos)
            else:
                create_time = f"{date}{clock}.{nanos // 1000:06d}Z"
            if u_seconds == seconds and u_nanos == nanos:
                update_time = create_time
            else:
                day, second = divmod(u_seconds, 86_400)
                date = days.get(day) or date_of(day)
                clock = clocks.get(second) or _clock(clocks, second)
                if u_nanos % 1000 or not u_nanos % 1_000_000:
                    update_time = self._times.text(u_seconds, u_nanos)
                else:
                    update_time = f"{date}{clock}.{u_nanos // 1000:06d}Z"
            append(
                f'{{"id": "{user.id}", "name": {encode(name)}, "email": {encode(email)}, '
                f'"createTime": "{create_time}", "updateTime": "{update_time}", '
                f'"etag": {encode(etag)}}}\n'
            )
        return "".join(out)

    def line(self, user: resources_pb2.User) -> str:
        parts = [f'{{"id": "{user.id}"']
        if user.name:
            parts.append(f', "name": {encode_basestring(user.name)}')
        if user.email:
            parts.append(f', "email": {encode_basestring(user.email)}')
        if user.addresses:
            addresses = ", ".join(self._address(a) for a in user.addresses)
            parts.append(f', "addresses": [{addresses}]')
        if user.HasField("create_time"):
            parts.append(f', "createTime": "{self._times.format(user.create_time)}"')
        if user.HasField("update_time"):
            parts.append(f', "updateTime": "{self._times.format(user.update_time)}"')
        if user.etag:
            parts.append(f', "etag": {encode_basestring(user.etag)}')
        parts.append("}\n")
        return "".join(parts)

    def _address(self, address: resources_pb2.Address) -> str:
        times = self._times
        return (
            f'{{"id": "{address.id}", "userId": "{address.user_id}", '
            f'"email": {encode_basestring(address.email)}, '
            f'"createTime": "{times.format(address.create_time)}", '
            f'"updateTime": "{times.format(address.update_time)}", '
            f'"etag": {encode_basestring(address.etag)}}}'
        )


class CsvRows:
    """Users to CSV: a header, then `id,name,email,create_time,update_time`."""

    def __init__(self) -> None:
        self._times = _Times()
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")

    def header(self) -> str:
        return ",".join(CSV_COLUMNS) + "\n"

    def lines(self, users: Iterable[resources_pb2.User]) -> str:
        times = self._times.format
        self._writer.writerows(
            [(u.id, u.name, u.email, times(u.create_time), times(u.update_time)) for u in users]
        )
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text


def read_rows(source: IO[str], line_numbers: list[int]) -> Iterator[NewUser]:
    """The users of an import file (JSON lines, or CSV if it does not start with `{`);
    appends each row's line number to `line_numbers`. Ids and times are ignored."""
    first = source.readline()
    if first.lstrip().startswith("{") or not first.strip():
        return _json_rows(first, source, line_numbers)
    return _csv_rows(first, source, line_numbers)


def _json_rows(first: str, source: IO[str], line_numbers: list[int]) -> Iterator[NewUser]:
    loads, numbered, new_user = json.loads, line_numbers.append, NewUser
    for number, line in enumerate(_chain(first, source), start=1):
        try:
            row = loads(line)
        except json.JSONDecodeError as error:
            if not line.strip():
                continue
            raise RowError(number, "json", f"not valid JSON: {error.msg}") from None
        if type(row) is not dict:
            raise RowError(number, "json", "not a JSON object")
        name, email = row.get("name", ""), row.get("email", "")
        if type(name) is not str or type(email) is not str:
            _text(row, "name", number)
            _text(row, "email", number)
        addresses = row.get("addresses")
        numbered(number)
        yield new_user(name, email, _address_emails(addresses, number) if addresses else (), "")


def _chain(first: str, source: IO[str]) -> Iterator[str]:
    yield first
    yield from source


def _text(row: dict[str, object], field: str, line: int) -> str:
    value = row.get(field, "")
    if not isinstance(value, str):
        raise RowError(line, field, "must be a string")
    return value


def _address_emails(addresses: object, line: int) -> tuple[str, ...]:
    if not isinstance(addresses, list) or not all(isinstance(a, dict) for a in addresses):
        raise RowError(line, "addresses", "must be a list of objects with an email")
    return tuple(_text(a, "email", line) for a in addresses)


def _csv_rows(first: str, source: IO[str], line_numbers: list[int]) -> Iterator[NewUser]:
    header = next(csv.reader([first]))
    missing = [column for column in ("name", "email") if column not in header]
    if missing:
        raise RowError(1, "header", f"names no column {' or '.join(missing)}")
    name_at, email_at = header.index("name"), header.index("email")
    reader = csv.reader(source)
    for row in reader:
        number = reader.line_num + 1  # the header was read apart
        if not row:
            continue
        if len(row) != len(header):
            raise RowError(number, "csv", f"has {len(row)} columns, the header {len(header)}")
        line_numbers.append(number)
        yield NewUser(row[name_at], row[email_at], request_id="")
