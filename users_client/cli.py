"""Operator commands `export`, `import` and `watch`: a server's users to and from files,
and its changes as JSON lines (API.md "Server process"); `users-service` dispatches here."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from google.protobuf import json_format

from users_client.client import BASIC, FULL, UsersClient, tls_from_ca_file
from users_client.errors import FieldViolation, UsersError
from users_client.files import CsvRows, JsonLines, RowError, read_rows
from users_client.progress import RowProgress

COMMANDS = ("export", "import", "watch")
DEFAULT_TARGET = "localhost:50051"
VIEWS = {"basic": BASIC, "full": FULL}
# Messages of StreamUsers: the contract's cap, the fewest messages per user.
EXPORT_BATCH = 1000


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser("export", help="write a server's users to JSON lines or CSV")
    _add_connection_flags(export)
    export.add_argument("--email-domain", default="", help="only users of this email domain")
    export.add_argument("--view", choices=tuple(VIEWS), default="basic")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("-o", "--output", help="the file to write (default: stdout)")

    import_ = commands.add_parser("import", help="create users from a file, all or nothing")
    _add_connection_flags(import_)
    import_.add_argument("file", help="JSON lines as export writes them, or CSV; - for stdin")

    watch = commands.add_parser("watch", help="print changes to users as JSON lines")
    _add_connection_flags(watch)
    watch.add_argument("--email-domain", default="", help="only users of this email domain")
    watch.add_argument("--resume-token", default="", help="go on after this change")


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=DEFAULT_TARGET, help="the server, host:port")
    parser.add_argument(
        "--token",
        default=os.environ.get("USERS_TOKEN"),
        help="a bearer token, when the server has auth on (USERS_TOKEN)",
    )
    parser.add_argument("--tls-ca-file", help="talk TLS, trusting this CA (PEM)")


def run(args: argparse.Namespace) -> int:
    commands = {"export": _export, "import": _import, "watch": _watch}
    try:
        return _run_loop(commands[args.command](args))
    except UsersError as error:
        return _fail(error.message or str(error))
    except OSError as error:
        return _fail(str(error))


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, as the server runs
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: Sequence[str] | None = None, prog: str = "python -m users_client") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="users.v1 operator commands")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


def _client(args: argparse.Namespace) -> UsersClient:
    tls = tls_from_ca_file(args.tls_ca_file) if args.tls_ca_file else False
    return UsersClient(args.target, token=args.token, tls=tls)


async def _export(args: argparse.Namespace) -> int:
    formatter = CsvRows() if args.format == "csv" else JsonLines()
    with _output(args.output) as out:
        if isinstance(formatter, CsvRows):
            out.write(formatter.header())
        async with _client(args) as users:
            batches = users.stream_user_batches(
                email_domain=args.email_domain, view=VIEWS[args.view], batch_size=EXPORT_BATCH
            )
            with RowProgress("export") as progress:
                async for batch in batches:
                    out.write(formatter.lines(batch))
                    progress.advance(len(batch))
    sys.stderr.write(progress.summary("exported") + "\n")
    return 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8", newline="") as out:
        yield out


async def _import(args: argparse.Namespace) -> int:
    line_numbers: list[int] = []
    with _input(args.file) as source:
        rows = read_rows(source, line_numbers)
        async with _client(args) as users:
            with RowProgress("import", total=_count_lines(args.file)) as progress:
                try:
                    created = await users.import_users(rows, on_sent=progress.advance)
                except RowError as error:
                    return _bad_row(str(error))
                except UsersError as error:
                    located = _located(error, line_numbers)
                    if located is None:
                        raise
                    return _bad_row(located)
    progress.count = created  # what the server says it created
    sys.stdout.write(progress.summary("imported") + "\n")
    return 0


@contextlib.contextmanager
def _input(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdin
        return
    with open(path, encoding="utf-8", newline="") as source:
        yield source


def _count_lines(path: str) -> int | None:
    """A total for the progress bar where it is cheap: a regular file's lines (less a
    CSV header; a rough total is enough for an ETA)."""
    if path == "-" or not Path(path).is_file():
        return None
    count = 0
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def _located(error: UsersError, line_numbers: list[int]) -> str | None:
    """`line N: <field>: <problem>` for the first row the server named (its 0-based
    position in the stream, `requests[41007].user.email`), else None."""
    violations = list(error.field_violations)
    field = error.metadata.get("field", "")
    if not violations and field:
        problem = error.message.removeprefix(f"{field}: ")
        violations = [FieldViolation(field, problem)]
    for violation in violations:
        head, _, rest = violation.field.partition("].")
        if not head.startswith("requests[") or not head[9:].isdigit():
            continue
        index = int(head[9:])
        if index < len(line_numbers):
            return f"line {line_numbers[index]}: {rest.removeprefix('user.')}: " + (
                violation.description
            )
    return None


def _bad_row(message: str) -> int:
    sys.stderr.write(f"{message}\nnothing was imported\n")
    return 1


async def _watch(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    async with _client(args) as users:
        watch = users.watch_users(email_domain=args.email_domain, resume_token=args.resume_token)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        try:
            async for change in watch:
                line = json.dumps(json_format.MessageToDict(change), ensure_ascii=False)
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
        except asyncio.CancelledError:
            task.uncancel()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
    sys.stderr.write(f"resume-token: {watch.resume_token}\n")
    return 0


def _fail(message: str) -> int:
    sys.stderr.write(f"users-service: error: {message}\n")
    return 1
