"""A million-user table for the listing and streaming suites, seeded by COPY in seconds.

Values vary the way a real table's do: create_time spread over three years (a few
users share a microsecond-free second), names drawn from common first and last names
(so many users share a name and ties are broken by id), email domains skewed (one
provider holds most users), and two addresses a user on average.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg

from bench import database
from bench.database import driver_dsn
from bench.measurement import say

FIRST = [
    "Ada",
    "Alan",
    "Alice",
    "Amir",
    "Ana",
    "Anna",
    "Ben",
    "Carla",
    "Chen",
    "David",
    "Elena",
    "Emma",
    "Eva",
    "Fatima",
    "Grace",
    "Hana",
    "Ivan",
    "Jan",
    "Jonas",
    "Julia",
    "Kai",
    "Karin",
    "Lars",
    "Lea",
    "Leo",
    "Lina",
    "Luca",
    "Maria",
    "Max",
    "Mia",
    "Nina",
    "Noah",
    "Olga",
    "Omar",
    "Paul",
    "Petra",
    "Priya",
    "Rosa",
    "Sara",
    "Sofia",
    "Tom",
    "Uma",
    "Vera",
    "Wei",
    "Yara",
    "Yusuf",
    "Zoe",
]
LAST = [
    "Meyer",
    "Smith",
    "Garcia",
    "Kim",
    "Nguyen",
    "Rossi",
    "Novak",
    "Silva",
    "Kowalski",
    "Jensen",
    "Cohen",
    "Ivanova",
    "Sato",
    "Muller",
    "Brown",
    "Lopez",
    "Patel",
    "Khan",
    "Andersen",
    "Dubois",
    "Santos",
    "Horvat",
    "Larsen",
    "Wagner",
    "Popescu",
    "Takahashi",
    "Fischer",
    "Moreau",
    "Costa",
    "Schmidt",
    "Yilmaz",
    "Weber",
    "Nowak",
    "Berg",
    "Hoffmann",
    "Haddad",
]
# email_domain skew: one provider holds 60% of users (so a filtered listing reaches
# page 10,000), the rest spread over smaller ones.
BIG_DOMAIN = "mail.example.com"
SMALL_DOMAINS = tuple(f"corp{n}.example.org" for n in range(200))
# Half the addresses at one provider: ~63% of users have one there, so an
# address_email_contains filter on it reaches page 10,000 too.
BIG_ADDRESS_DOMAIN = "post.example.net"
ADDRESS_DOMAINS = ("work.example.io", "inbox.example.de", "home.example.fr")
SPAN = timedelta(days=3 * 365)
START = datetime(2023, 1, 1, tzinfo=UTC)
SEED = 20261125
# A database of its own: the unary suite recreates users_bench with 100,000 users, and
# --reuse-seed must find the million it left.
DATABASE = "users_bench_large"


def user_email(user_id: int, first: str, last: str, domain: str) -> str:
    return f"{first.lower()}.{last.lower()}{user_id}@{domain}"


UserRecord = tuple[int, str, str, str, datetime, datetime, int]
AddressRecord = tuple[int, int, str, datetime, datetime, int]


def user_records(count: int) -> Iterator[UserRecord]:
    chance = random.Random(SEED)
    span_seconds = int(SPAN.total_seconds())
    for user_id in range(1, count + 1):
        first, last = chance.choice(FIRST), chance.choice(LAST)
        domain = BIG_DOMAIN if chance.random() < 0.6 else chance.choice(SMALL_DOMAINS)
        # Whole seconds with random microseconds: ids do not follow create_time.
        created = START + timedelta(
            seconds=chance.randrange(span_seconds), microseconds=chance.randrange(1_000_000)
        )
        updated = created + timedelta(seconds=chance.randrange(86_400))
        email = user_email(user_id, first, last, domain)
        yield (user_id, f"{first} {last}", email, domain, created, updated, 1)


def address_records(users: int, count: int) -> Iterator[AddressRecord]:
    """`count` addresses, on users picked at random, ids in insertion order."""
    chance = random.Random(SEED + 1)
    for address_id in range(1, count + 1):
        user_id = chance.randrange(1, users + 1)
        big = chance.random() < 0.5
        domain = BIG_ADDRESS_DOMAIN if big else chance.choice(ADDRESS_DOMAINS)
        created = START + timedelta(seconds=chance.randrange(int(SPAN.total_seconds())))
        yield (address_id, user_id, f"a{address_id}.u{user_id}@{domain}", created, created, 1)


async def seed(url: str, users: int, addresses: int) -> None:
    """COPY both tables, move the id sequences past them, then VACUUM (ANALYZE).

    VACUUM rather than ANALYZE: it also merges the trigram index's pending list and
    sets the visibility map, as a long-running table would have them.
    """
    connection = await asyncpg.connect(driver_dsn(url))
    try:
        await connection.copy_records_to_table(
            "users",
            records=user_records(users),
            columns=database.USER_COLUMNS,
        )
        await connection.copy_records_to_table(
            "addresses",
            records=address_records(users, addresses),
            columns=("id", "user_id", "email", "create_time", "update_time", "version"),
        )
        for table, count in (("users", users), ("addresses", addresses)):
            await connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), $1, $2)",
                max(count, 1),
                count > 0,
            )
        await connection.execute("VACUUM (ANALYZE) users")
        await connection.execute("VACUUM (ANALYZE) addresses")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def trim(url: str, users: int) -> None:
    """Back to the seeded table: users an earlier run created (ids past the seed) go."""
    connection = await asyncpg.connect(driver_dsn(url))
    try:
        await connection.execute("DELETE FROM addresses WHERE user_id > $1", users)
        await connection.execute("DELETE FROM users WHERE id > $1", users)
        await connection.execute("VACUUM (ANALYZE) users")
    finally:
        await connection.close()


async def prepare(admin_url: str, users: int, addresses: int, *, reseed: bool) -> str:
    """The large database ready for a suite (listing, bulk), and its service URL: seeded
    anew, or the earlier seed migrated and trimmed back to it (`--reuse-seed`)."""
    started = time.monotonic()
    url = database.service_url(admin_url, DATABASE)
    if reseed:
        say(f"recreating {DATABASE}; {users:,} users, {addresses:,} addresses")
        await database.recreate(admin_url, DATABASE)
        await database.migrate(url)
        await seed(url, users, addresses)
        say(f"seeded in {time.monotonic() - started:.0f} s")
    else:
        await database.migrate(url)
        # Rows an earlier run loaded go, so every run reads the same million.
        await trim(url, users)
    return url
