"""The floor: the raw asyncpg driver doing the RPC's SQL, in its own process, the same closed loop.

Run as `python -m bench.baseline --dsn postgresql://... ...`; prints one Measurement as JSON.
Two modes:
  query   the one statement the RPC is about (SELECT by id; INSERT ... RETURNING),
          autocommit: what the issue calls "the same query";
  replay  the statements the service sends for one call, round trip for round trip
          (re-captured for issue 7: one statement in autocommit each), so
          the gap between replay and the service is Python, SQLAlchemy and gRPC.
"""

from __future__ import annotations

import argparse
import itertools
import random
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import asyncpg

from bench.measurement import (
    LoadShape,
    Measurement,
    Operation,
    measure_in_child,
    run_closed_loop,
    run_event_loop,
)

# service/db/engine.py: pool_size=10 plus max_overflow=10. The baseline gets no more
# connections than the service can use, so the comparison is not about pool size.
SERVICE_POOL_MAX = 20

SELECT_USER = "SELECT id, name, email, create_time, update_time, version FROM users WHERE id = $1"
INSERT_USER = (
    "INSERT INTO users (name, email, email_domain, create_time, update_time, version) "
    "VALUES ($1, $2, $3, $4, $5, 1) RETURNING id"
)
# What the service sends, each alone in autocommit (no BEGIN/COMMIT), as SQLAlchemy
# renders it for asyncpg (issue 7: no pool_pre_ping, one statement per GetUser and per
# CreateUser without addresses).
SERVICE_SELECT_FULL = (
    "SELECT users.id, users.name, users.email, users.create_time, users.update_time, "
    "users.version, addresses.id AS address_id, addresses.email AS address_email, "
    "addresses.create_time AS address_create_time, addresses.update_time AS "
    "address_update_time, addresses.version AS address_version FROM users LEFT OUTER JOIN "
    "addresses ON addresses.user_id = users.id WHERE users.id = $1::BIGINT "
    "ORDER BY users.id, addresses.id"
)
SERVICE_INSERT_USER = (
    "INSERT INTO users (name, email, email_domain, create_time, update_time, version) "
    "VALUES ($1::VARCHAR, $2::VARCHAR, $3::VARCHAR, $4::TIMESTAMP WITH TIME ZONE, "
    "$5::TIMESTAMP WITH TIME ZONE, $6::INTEGER) RETURNING users.id"
)


_DOMAIN = "bench.example.com"


class Mode(StrEnum):
    QUERY = "query"
    REPLAY = "replay"


def pool_size_for(concurrency: int) -> int:
    return max(1, min(concurrency, SERVICE_POOL_MAX))


async def measure_driver(dsn: str, shape: LoadShape, max_id: int, mode: Mode) -> Measurement:
    """Parent side: runs the driver baseline in a separate process."""
    return await measure_in_child(
        "bench.baseline", [f"--dsn={dsn}", f"--max-id={max_id}", f"--mode={mode}", *shape.flags()]
    )


Call = Callable[[int], Coroutine[Any, Any, None]]


def _query_caller(pool: asyncpg.Pool, operation: Operation, max_id: int) -> Call:
    if operation is Operation.GET_USER:

        async def get_user(_worker: int) -> None:
            row = await pool.fetchrow(SELECT_USER, random.randint(1, max_id))
            if row is None:
                raise LookupError("seeded user missing")

        return get_user

    emails = _unique_emails("query")

    async def create_user(_worker: int) -> None:
        now = datetime.now(UTC)
        await pool.fetchval(INSERT_USER, "Bench User", next(emails), _DOMAIN, now, now)

    return create_user


def _replay_caller(pool: asyncpg.Pool, operation: Operation, max_id: int) -> Call:
    if operation is Operation.GET_USER:

        async def get_user(_worker: int) -> None:
            rows = await pool.fetch(SERVICE_SELECT_FULL, random.randint(1, max_id))
            if not rows:
                raise LookupError("seeded user missing")

        return get_user

    emails = _unique_emails("replay")

    async def create_user(_worker: int) -> None:
        now = datetime.now(UTC)
        await pool.fetchval(SERVICE_INSERT_USER, "Bench User", next(emails), _DOMAIN, now, now, 1)

    return create_user


def _unique_emails(mode: str) -> Iterator[str]:
    # Unique per process and call, so no CreateUser fails on a taken email.
    tag = uuid.uuid4().hex[:8]
    return (f"{mode}-{tag}-{n}@{_DOMAIN}" for n in itertools.count())


async def _run(dsn: str, shape: LoadShape, max_id: int, mode: Mode) -> None:
    size = pool_size_for(shape.concurrency)
    async with asyncpg.create_pool(dsn, min_size=size, max_size=size) as pool:
        make = _query_caller if mode is Mode.QUERY else _replay_caller
        measured = await run_closed_loop(make(pool, shape.operation, max_id), shape)
    print(measured.to_json(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--dsn", required=True, help="postgresql://... of the bench database")
    parser.add_argument("--max-id", type=int, required=True, help="GetUser picks ids in 1..max")
    parser.add_argument("--mode", type=Mode, choices=list(Mode), default=Mode.QUERY)
    parser.add_argument("--operation", type=Operation, choices=list(Operation), required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    args = parser.parse_args()
    shape = LoadShape(args.operation, args.concurrency, args.warmup, args.duration)
    run_event_loop(_run(args.dsn, shape, args.max_id, args.mode))


if __name__ == "__main__":
    main()
