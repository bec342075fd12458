"""One frozen Settings for the process, parsed once from flags and environment."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///users.db"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "[::]"
    port: int = 50051
    database_url: str = DEFAULT_DATABASE_URL
    grace_seconds: float = 10.0
    log_format: str = "text"
    # Server key that signs page tokens; a random per-process key when unset.
    page_token_key: str = ""


def add_server_flags(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Flags of `serve`; each falls back to its environment variable (API.md)."""
    parser.add_argument("--host", default=env.get("HOST", "[::]"), help="address to bind (HOST)")
    parser.add_argument(
        "--port",
        type=int,
        default=_int(env, "PORT", 50051),
        help="port to bind; 0 picks one (PORT)",
    )
    add_database_flag(parser, env)
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=float(env.get("GRACE_SECONDS", "10")),
        help="how long in-flight calls may finish on SIGTERM (GRACE_SECONDS)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=env.get("LOG_FORMAT", "text"),
        help="log line format (LOG_FORMAT)",
    )


def add_database_flag(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    parser.add_argument(
        "--database-url",
        default=env.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="SQLAlchemy async URL: postgresql+asyncpg://, mysql+aiomysql:// or "
        "sqlite+aiosqlite:/// (DATABASE_URL)",
    )


def settings_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    return Settings(
        host=getattr(args, "host", "[::]"),
        port=getattr(args, "port", 50051),
        database_url=args.database_url,
        grace_seconds=getattr(args, "grace_seconds", 10.0),
        log_format=getattr(args, "log_format", "text"),
        page_token_key=env.get("PAGE_TOKEN_KEY", ""),
    )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"error: {name}={raw!r} is not a whole number") from None


__all__: Sequence[str] = ("Settings", "add_database_flag", "add_server_flags", "settings_from")
