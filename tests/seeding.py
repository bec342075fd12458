"""Many users fast: one INSERT ... SELECT over generated numbers, on every backend."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import String, cast, delete, func, insert, literal, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.tables import users
from service.db.types import UtcDateTime
from service.domain.models import utc_now

# Rows of the generated number table; MySQL 8 caps recursion at 1000 by default.
_SIDE = 1000


@dataclass(frozen=True, slots=True)
class Seeded:
    domain: str
    first_id: int
    last_id: int
    count: int


async def seed_users(engine: AsyncEngine, count: int) -> Seeded:
    """`count` BASIC users (no addresses) in a domain of their own, ids consecutive."""
    assert count <= _SIDE * _SIDE
    domain = f"seed-{uuid.uuid4().hex[:10]}.test"
    seq = select(literal(1).label("n")).cte("seq", recursive=True)
    seq = seq.union_all(select(seq.c.n + 1).where(seq.c.n < _SIDE))
    high, low = seq.alias("high"), seq.alias("low")
    number = (high.c.n - 1) * _SIDE + low.c.n
    text = cast(number, String(20))
    now = utc_now()
    rows = (
        select(
            literal("Seeded ", String(20)) + text,
            literal("s", String(5)) + text + literal(f"@{domain}", String(120)),
            literal(domain, String(120)),
            literal(now, UtcDateTime()),
            literal(now, UtcDateTime()),
            literal(1),
        )
        .select_from(high.join(low, true()))
        .where(number <= count)
        .order_by(number)
    )
    columns = ["name", "email", "email_domain", "create_time", "update_time", "version"]
    async with engine.begin() as connection:
        await connection.execute(insert(users).from_select(columns, rows))
        first, last, total = (
            await connection.execute(
                select(func.min(users.c.id), func.max(users.c.id), func.count()).where(
                    users.c.email_domain == domain
                )
            )
        ).one()
    assert total == count and last - first + 1 == count
    return Seeded(domain=domain, first_id=first, last_id=last, count=count)


async def unseed(engine: AsyncEngine, seeded: Seeded) -> None:
    async with engine.begin() as connection:
        await connection.execute(delete(users).where(users.c.email_domain == seeded.domain))
