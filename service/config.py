"""One frozen Settings for the process, parsed once from flags and environment."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///users.db"
LOG_FORMATS = ("text", "json")
ACCESS_LOGS = ("all", "errors", "off")  # api/calls.py AccessLog
POOLERS = ("none", "pgbouncer")  # db/engine.py


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "[::]"
    port: int = 50051
    database_url: str = DEFAULT_DATABASE_URL
    # none, or pgbouncer: the URL leads to PgBouncer in transaction mode (db/engine.py).
    database_pooler: str = "none"
    # A URL straight to PostgreSQL for what a transaction pooler cannot carry (LISTEN);
    # empty: the change feed polls instead.
    direct_database_url: str = ""
    # PostgreSQL streaming replicas for the reads that may lag (db/replicas.py).
    read_database_urls: tuple[str, ...] = ()
    max_replica_lag: float = 5.0
    grace_seconds: float = 10.0
    log_format: str = "text"
    # Which calls get a log line: all, errors (failed or slower than slow_call_ms), off.
    access_log: str = "errors"
    slow_call_ms: float = 1000.0
    workers: int = 1
    metrics_port: int | None = None
    auth_tokens_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # Set for the processes that `--workers N` starts: they share the port (SO_REUSEPORT)
    # and leave migrations to the parent. Never a flag of its own for operators.
    worker: bool = False
    # Server key that signs page tokens (PAGE_TOKEN_KEY); when unset, a random key that
    # the first start stores in the database (table server_keys) for every process.
    page_token_key: str = ""
    # ImportUsers aborts a client silent for this long (API.md: 60 s); IMPORT_IDLE_SECONDS.
    import_idle_seconds: float = 60.0
    # Calls in flight beyond this are refused with UNAVAILABLE; 0 derives it from the
    # database pool and the cores (server.admission_limit).
    max_in_flight: int = 0
    # HTTP/2 streams (calls) one client connection may hold open at once; 0: no limit.
    max_concurrent_streams: int = 0
    # How long the change stream keeps changes (API.md: at least 7 days by default).
    change_retention: timedelta = timedelta(days=7)


# The one place defaults are written: flags and settings_from read them from here.
DEFAULTS = Settings()


def add_server_flags(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Flags of `serve`; each falls back to its environment variable (API.md)."""
    parser.add_argument(
        "--host", default=env.get("HOST", DEFAULTS.host), help="address to bind (HOST)"
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=_int(env, "PORT", DEFAULTS.port),
        help="port to bind; 0 picks one (PORT)",
    )
    add_database_flag(parser, env)
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=_float(env, "GRACE_SECONDS", DEFAULTS.grace_seconds),
        help="how long in-flight calls may finish on SIGTERM (GRACE_SECONDS)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=_choice(env, "LOG_FORMAT", LOG_FORMATS, DEFAULTS.log_format),
        help="log line format (LOG_FORMAT)",
    )
    parser.add_argument(
        "--read-database-url",
        action="append",
        default=None,
        help="a PostgreSQL streaming replica for ListUsers, ListAddresses and StreamUsers; "
        "repeatable (READ_DATABASE_URL, comma-separated)",
    )
    parser.add_argument(
        "--max-replica-lag",
        type=float,
        default=_float(env, "MAX_REPLICA_LAG", DEFAULTS.max_replica_lag),
        help="seconds a replica may lag before its reads go to the primary (MAX_REPLICA_LAG)",
    )
    parser.add_argument(
        "--access-log",
        choices=ACCESS_LOGS,
        default=_choice(env, "ACCESS_LOG", ACCESS_LOGS, DEFAULTS.access_log),
        help="which calls get a log line: all, errors (failed calls and calls slower than "
        "--slow-call-ms; the default) or off (ACCESS_LOG)",
    )
    parser.add_argument(
        "--slow-call-ms",
        type=float,
        default=_float(env, "SLOW_CALL_MS", DEFAULTS.slow_call_ms),
        help="with --access-log errors, calls at least this slow get a line too (SLOW_CALL_MS)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=_int(env, "WORKERS", DEFAULTS.workers),
        help="server processes sharing the port with SO_REUSEPORT (WORKERS)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_optional_int(env, "METRICS_PORT"),
        help="serve Prometheus /metrics on this port; off when unset (METRICS_PORT)",
    )
    parser.add_argument(
        "--auth-tokens-file",
        default=env.get("AUTH_TOKENS_FILE", ""),
        help="require 'authorization: Bearer <token>'; the file has one "
        "'<read|write> <sha256-hex-of-token>' a line, re-read on SIGHUP (AUTH_TOKENS_FILE)",
    )
    parser.add_argument(
        "--tls-cert-file",
        default=env.get("TLS_CERT_FILE", ""),
        help="PEM certificate chain: serve TLS (TLS_CERT_FILE)",
    )
    parser.add_argument(
        "--tls-key-file",
        default=env.get("TLS_KEY_FILE", ""),
        help="PEM private key of --tls-cert-file (TLS_KEY_FILE)",
    )
    parser.add_argument(
        "--tls-client-ca-file",
        default=env.get("TLS_CLIENT_CA_FILE", ""),
        help="PEM CA certificates: require client certificates signed by them, mTLS "
        "(TLS_CLIENT_CA_FILE)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=_int(env, "MAX_IN_FLIGHT", DEFAULTS.max_in_flight),
        help="calls in flight beyond this are refused at once with UNAVAILABLE and a retry "
        "delay; 0 (default) derives it from the database pool and the cores (MAX_IN_FLIGHT)",
    )
    parser.add_argument(
        "--max-concurrent-streams",
        type=int,
        default=_int(env, "MAX_CONCURRENT_STREAMS", DEFAULTS.max_concurrent_streams),
        help="calls one client connection may have open at once; the rest wait in the "
        "client, costing the server nothing; 0 (default) is no limit (MAX_CONCURRENT_STREAMS)",
    )
    parser.add_argument(
        "--change-retention",
        type=duration,
        default=_duration(env, "CHANGE_RETENTION", DEFAULTS.change_retention),
        help="how long WatchUsers keeps changes, e.g. 7d, 12h, 30m, 90s; an older resume "
        "token is FAILED_PRECONDITION (CHANGE_RETENTION)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def add_database_flag(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    parser.add_argument(
        "--database-url",
        default=env.get("DATABASE_URL", DEFAULTS.database_url),
        help="SQLAlchemy async URL: postgresql+asyncpg://, mysql+aiomysql:// or "
        "sqlite+aiosqlite:/// (DATABASE_URL)",
    )
    parser.add_argument(
        "--database-pooler",
        choices=POOLERS,
        default=_choice(env, "DATABASE_POOLER", POOLERS, DEFAULTS.database_pooler),
        help="pgbouncer: --database-url leads to PgBouncer in transaction mode; no "
        "prepared statement outlives a transaction (DATABASE_POOLER)",
    )
    parser.add_argument(
        "--direct-database-url",
        default=env.get("DIRECT_DATABASE_URL", ""),
        help="with a pooler: PostgreSQL itself, for LISTEN (WatchUsers wakes at once); "
        "without it the change feed polls (DIRECT_DATABASE_URL)",
    )


def settings_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    return Settings(
        host=getattr(args, "host", DEFAULTS.host),
        port=getattr(args, "port", DEFAULTS.port),
        database_url=args.database_url,
        database_pooler=getattr(args, "database_pooler", DEFAULTS.database_pooler),
        direct_database_url=getattr(args, "direct_database_url", ""),
        grace_seconds=getattr(args, "grace_seconds", DEFAULTS.grace_seconds),
        log_format=getattr(args, "log_format", DEFAULTS.log_format),
        read_database_urls=_read_urls(getattr(args, "read_database_url", None), env),
        max_replica_lag=getattr(args, "max_replica_lag", DEFAULTS.max_replica_lag),
        access_log=getattr(args, "access_log", DEFAULTS.access_log),
        slow_call_ms=getattr(args, "slow_call_ms", DEFAULTS.slow_call_ms),
        workers=getattr(args, "workers", DEFAULTS.workers),
        metrics_port=getattr(args, "metrics_port", None),
        auth_tokens_file=getattr(args, "auth_tokens_file", ""),
        tls_cert_file=getattr(args, "tls_cert_file", ""),
        tls_key_file=getattr(args, "tls_key_file", ""),
        tls_client_ca_file=getattr(args, "tls_client_ca_file", ""),
        worker=getattr(args, "worker", False),
        page_token_key=env.get("PAGE_TOKEN_KEY", ""),
        import_idle_seconds=_float(env, "IMPORT_IDLE_SECONDS", DEFAULTS.import_idle_seconds),
        max_in_flight=max(0, getattr(args, "max_in_flight", DEFAULTS.max_in_flight)),
        change_retention=getattr(args, "change_retention", DEFAULTS.change_retention),
        max_concurrent_streams=max(
            0, getattr(args, "max_concurrent_streams", DEFAULTS.max_concurrent_streams)
        ),
    )


def port_number(raw: str) -> int:
    """argparse type for ports: 0 (pick a free one) to 65535."""
    try:
        port = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0..65535)")
    return port


def _choice(env: Mapping[str, str], name: str, choices: Sequence[str], default: str) -> str:
    # argparse checks choices of flags given on the command line, not of defaults.
    raw = env.get(name) or default
    if raw not in choices:
        message = f"users-service: error: {name}={raw!r} is not one of {', '.join(choices)}"
        raise SystemExit(message)
    return raw


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"users-service: error: {name}={raw!r} is not a number") from None


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    return _int(env, name, 0) if env.get(name) else None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return port_number(raw) if name.endswith("PORT") else int(raw)
    except (ValueError, argparse.ArgumentTypeError):
        message = f"users-service: error: {name}={raw!r} is not a valid {name.lower()}"
        raise SystemExit(message) from None


__all__: Sequence[str] = ("Settings", "add_database_flag", "add_server_flags", "settings_from")


_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def duration(text: str) -> timedelta:
    """ "7d", "12h", "30m", "90s" or "1.5s" -> timedelta; argparse reports a ValueError."""
    number, unit = text.strip()[:-1], text.strip()[-1:].lower()
    try:
        seconds = float(number) * _UNITS[unit]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: a number and a unit, d, h, m or s (e.g. 7d)"
        ) from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than 0")
    return timedelta(seconds=seconds)


def _duration(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return duration(raw)
    except argparse.ArgumentTypeError as error:
        raise SystemExit(f"users-service: error: {name}: {error}") from None


def _read_urls(flags: list[str] | None, env: Mapping[str, str]) -> tuple[str, ...]:
    """--read-database-url flags if any, else READ_DATABASE_URL split at commas."""
    urls = flags if flags else env.get("READ_DATABASE_URL", "").split(",")
    return tuple(url.strip() for url in urls if url.strip())
