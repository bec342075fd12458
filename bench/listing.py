"""`--suite listing` (issue 4): ListUsers page 1 against page 10,000 on a million users.

Page 10,000 is reached without paging there: the server gets a known PAGE_TOKEN_KEY, and
the bench mints the token for the 500,000th row of each order (and filter) itself, as
the server would have issued it. The raw baseline for the `email` filter is asyncpg's
`SELECT … WHERE email = $1`, in the same run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench import database, large_seed
from bench.ceiling import BareServer
from bench.measurement import REPO, BenchError, percentile, say
from bench.report import Environment
from bench.server_process import ServerProcess
from service.api.page_tokens import PageTokenCodec
from service.domain.listing import users_scope
from service.domain.queries import Cursor, Ordering, SortField, UserFilter

PAGE_SIZE = 50
DEEP_PAGE = 10_000
TOKEN_KEY = "bench-page-token-key"
ADDRESS_TEXT = "post.example"
EMAIL_LOOKUPS = 50  # distinct emails the email-filter case cycles through
ORDERINGS = [Ordering(field, descending) for field in SortField for descending in (False, True)]
FILTERS = {
    "none": UserFilter(),
    "email_domain": UserFilter(email_domain=large_seed.BIG_DOMAIN),
    "address_email_contains": UserFilter(address_email_contains=ADDRESS_TEXT),
}
_SQL_KEYS = {
    SortField.ID: "id",
    SortField.CREATE_TIME: "create_time",
    SortField.NAME: "name",
    SortField.EMAIL: "email",
}


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    requests: list[dict[str, Any]]


def _where(user_filter: UserFilter) -> str:
    if user_filter.email_domain:
        return f"WHERE email_domain = '{user_filter.email_domain}'"
    if user_filter.address_email_contains:
        return (
            "WHERE EXISTS (SELECT 1 FROM addresses a WHERE a.user_id = users.id "
            f"AND a.email LIKE '%{user_filter.address_email_contains}%')"
        )
    return ""


async def _deep_cursor(
    connection: asyncpg.Connection, user_filter: UserFilter, ordering: Ordering
) -> Cursor:
    """The last row of page 9,999: page 10,000 starts after it."""
    key = _SQL_KEYS[ordering.field]
    direction = "DESC" if ordering.descending else "ASC"
    order = f"{key} {direction}" if key == "id" else f"{key} {direction}, id {direction}"
    row = await connection.fetchrow(
        f"SELECT {key} AS key, id FROM users {_where(user_filter)} ORDER BY {order} "
        f"OFFSET {(DEEP_PAGE - 1) * PAGE_SIZE - 1} LIMIT 1"
    )
    if row is None:
        raise BenchError(f"fewer than {(DEEP_PAGE - 1) * PAGE_SIZE} rows match {user_filter}")
    return Cursor(row["key"], row["id"])


def _request(user_filter: UserFilter, ordering: Ordering, token: str = "") -> dict[str, Any]:
    return {
        "page_size": PAGE_SIZE,
        "page_token": token,
        "order_by": ordering.text,
        "email_domain": user_filter.email_domain,
        "address_email_contains": user_filter.address_email_contains,
    }


async def _cases(url: str, emails: list[str]) -> list[Case]:
    codec = PageTokenCodec(TOKEN_KEY.encode())
    cases = [Case("email lookup", [{"email": email} for email in emails])]
    connection = await asyncpg.connect(database.driver_dsn(url))
    try:
        for filter_name, user_filter in FILTERS.items():
            for ordering in ORDERINGS:
                cursor = await _deep_cursor(connection, user_filter, ordering)
                token = codec.issue(users_scope(user_filter, ordering), cursor)
                label = f"{filter_name} | {ordering.text}"
                cases.append(Case(f"{label} | 1", [_request(user_filter, ordering)]))
                cases.append(
                    Case(f"{label} | {DEEP_PAGE}", [_request(user_filter, ordering, token)])
                )
    finally:
        await connection.close()
    return cases


async def _raw_email_ms(url: str, emails: list[str], repeats: int) -> float:
    connection = await asyncpg.connect(database.driver_dsn(url))
    try:
        statement = await connection.prepare(
            "SELECT id, name, email, create_time, update_time, version FROM users WHERE email = $1"
        )
        timings = []
        for turn in range(repeats + 5):
            began = time.perf_counter()
            await statement.fetch(emails[turn % len(emails)])
            if turn >= 5:
                timings.append(time.perf_counter() - began)
    finally:
        await connection.close()
    timings.sort()
    return percentile(timings, 0.5) * 1000


async def _measure(target: str, cases: list[Case], repeats: int) -> dict[str, dict[str, float]]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.listing_client",
        f"--target={target}",
        f"--repeats={repeats}",
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    cases_json = json.dumps([{"name": c.name, "requests": c.requests} for c in cases])
    out, _ = await child.communicate(cases_json.encode())
    if child.returncode != 0:
        raise BenchError(f"bench.listing_client exited {child.returncode}")
    result: dict[str, dict[str, float]] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def run(admin_url: str, users: int, addresses: int, repeats: int, reseed: bool) -> None:
    started = time.monotonic()
    url = await large_seed.prepare(admin_url, users, addresses, reseed=reseed)
    chance = random.Random(7)
    connection = await asyncpg.connect(database.driver_dsn(url))
    try:
        ids = [chance.randrange(1, users + 1) for _ in range(EMAIL_LOOKUPS)]
        emails = [
            r["email"]
            for r in await connection.fetch(
                "SELECT email FROM users WHERE id = ANY($1::bigint[])", ids
            )
        ]
    finally:
        await connection.close()
    environment = Environment.detect(await database.describe_server(url))
    say("minting page-10,000 tokens")
    cases = await _cases(url, emails)
    os.environ["PAGE_TOKEN_KEY"] = TOKEN_KEY
    async with ServerProcess(url) as server:
        say(f"{len(cases)} cases, {repeats} calls each")
        measured = await _measure(server.target, cases, repeats)
    # The email lookup once more on the bare grpc.aio server: the same SELECT as the raw
    # baseline behind one gRPC call, i.e. what any Python gRPC service pays at least.
    async with BareServer(database.driver_dsn(url)) as bare:
        say("email lookup on the bare grpc.aio server")
        bare_ms = (await _measure(bare.target, cases[:1], repeats * 4))[cases[0].name]["p50_ms"]
    raw_ms = await _raw_email_ms(url, emails, repeats * 4)
    print(
        _render(
            environment,
            measured=measured,
            raw_ms=raw_ms,
            bare_ms=bare_ms,
            users=users,
            addresses=addresses,
            repeats=repeats,
        )
    )
    say(f"done in {time.monotonic() - started:.0f} s")


def _render(
    env: Environment,
    *,
    measured: dict[str, dict[str, float]],
    raw_ms: float,
    bare_ms: float,
    users: int,
    addresses: int,
    repeats: int,
) -> str:
    lines = [
        *env.header(),
        f"- {users:,} users, {addresses:,} addresses; page size {PAGE_SIZE}; one call in "
        f"flight; {repeats} calls per cell after 5 warm-up calls; p50 ms (p90 in brackets).",
        "",
        f"| filter | order_by | page 1 ms | page {DEEP_PAGE:,} ms | ratio (target ≤ 1.5) |",
        "|---|---|--:|--:|--:|",
    ]
    worst = 0.0
    for filter_name, user_filter in FILTERS.items():
        shown = {
            "none": "—",
            "email_domain": f"email_domain={user_filter.email_domain}",
            "address_email_contains": f"address_email_contains={ADDRESS_TEXT}",
        }[filter_name]
        for ordering in ORDERINGS:
            first = measured[f"{filter_name} | {ordering.text} | 1"]
            deep = measured[f"{filter_name} | {ordering.text} | {DEEP_PAGE}"]
            ratio = deep["p50_ms"] / first["p50_ms"]
            worst = max(worst, ratio)
            lines.append(
                f"| {shown} | {ordering.text} | {first['p50_ms']:.2f} ({first['p90_ms']:.2f}) "
                f"| {deep['p50_ms']:.2f} ({deep['p90_ms']:.2f}) | {ratio:.2f} |"
            )
    lookup = measured["email lookup"]
    lines += [
        "",
        f"Worst page-{DEEP_PAGE:,} ratio: {worst:.2f}.",
        "",
        "| email lookup | p50 ms | ratio to raw (target ≤ 2) |",
        "|---|--:|--:|",
        f"| ListUsers email=… | {lookup['p50_ms']:.2f} | {lookup['p50_ms'] / raw_ms:.2f} |",
        f"| bare grpc.aio server, that SELECT behind ListUsers | {bare_ms:.2f} "
        f"| {bare_ms / raw_ms:.2f} |",
        f"| raw asyncpg `SELECT … WHERE email = $1` (prepared) | {raw_ms:.3f} | 1.00 |",
    ]
    return "\n".join(lines)
