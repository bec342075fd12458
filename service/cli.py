"""Command line: `serve` and `migrate`; startup failures are one stderr line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from service.config import Settings, add_database_flag, add_server_flags, settings_from
from service.db.engine import BadDatabaseUrlError, create_engine, safe_url
from service.db.migrate import upgrade
from service.domain.errors import DatabaseUnavailableError
from service.logs import configure_logging
from service.server import StartupError, serve


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = settings_from(args)
    configure_logging(settings.log_format)
    try:
        if args.command == "migrate":
            _run(_migrate(settings))
            sys.stderr.write("database schema is up to date\n")
        else:
            _run(serve(settings))
    except BadDatabaseUrlError as error:
        return _fail(str(error))
    except DatabaseUnavailableError as error:
        cause = error.__cause__
        reason = type(cause).__name__ if cause is not None else "no answer"
        return _fail(f"cannot reach the database at {safe_url(settings.database_url)} ({reason})")
    except StartupError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="users-service", description="users.v1 gRPC service")
    commands = parser.add_subparsers(dest="command", required=True)
    add_server_flags(commands.add_parser("serve", help="run the gRPC server"), os.environ)
    add_database_flag(
        commands.add_parser("migrate", help="bring the database schema up to date"), os.environ
    )
    return parser


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _fail(message: str) -> int:
    sys.stderr.write(f"users-service: error: {message}\n")
    return 2
