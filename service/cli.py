"""Command line: `serve` and `migrate`; startup failures are one stderr line. The
operator commands `export`, `import` and `watch` are users_client's (a gRPC client)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from service.config import Settings, add_database_flag, add_server_flags, settings_from
from service.db.engine import BadDatabaseUrlError, create_engine, safe_url
from service.db.errors import DatabaseRefusedError
from service.db.migrate import upgrade
from service.domain.errors import DatabaseUnavailableError
from service.logs import configure_logging
from service.server import StartupError, serve

T = TypeVar("T")
SERVER_COMMANDS = ("serve", "migrate")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # export, import and watch (or help) need the operator commands; a server never
    # imports them (they are a gRPC client's, with a terminal library of their own).
    client_commands = not argv or argv[0] not in SERVER_COMMANDS
    args = _parser(client_commands).parse_args(argv)
    if args.command not in SERVER_COMMANDS:
        from users_client import cli as client_cli  # noqa: PLC0415

        return client_cli.run(args)
    settings = settings_from(args)
    configure_logging(settings.log_format)
    try:
        if args.command == "migrate":
            _run(_migrate(settings))
            sys.stderr.write("database schema is up to date\n")
        elif settings.workers > 1 and not settings.worker:
            # Imported only here: it brings prometheus-client's multiprocess mode along.
            from service.workers import supervise  # noqa: PLC0415

            return _run(supervise(settings, argv))
        else:
            _run(serve(settings))
    except (BadDatabaseUrlError, DatabaseUnavailableError, DatabaseRefusedError, StartupError) as e:
        return _fail(_startup_message(e, safe_url(settings.database_url)))
    except KeyboardInterrupt:
        return 130
    return 0


def _startup_message(error: Exception, database: str) -> str:
    if isinstance(error, DatabaseUnavailableError):
        cause = error.__cause__
        reason = type(cause).__name__ if cause is not None else "no answer"
        return f"cannot reach the database at {database} ({reason})"
    if isinstance(error, DatabaseRefusedError):
        return f"the database at {database} refused us: {error}"
    return str(error)


def _parser(client_commands: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="users-service", description="users.v1 gRPC service")
    commands = parser.add_subparsers(dest="command", required=True)
    add_server_flags(commands.add_parser("serve", help="run the gRPC server"), os.environ)
    add_database_flag(
        commands.add_parser("migrate", help="bring the database schema up to date"), os.environ
    )
    if client_commands:
        from users_client import cli as client_cli  # noqa: PLC0415

        client_cli.add_commands(commands)
    return parser


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings.database_url, pooler=settings.database_pooler)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def _run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _fail(message: str) -> int:
    sys.stderr.write(f"users-service: error: {message}\n")
    return 2
