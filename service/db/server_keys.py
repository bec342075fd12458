"""Server secrets generated once and kept in the database, shared by every process."""

from __future__ import annotations

import secrets

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.errors import KeyTakenError, execute, translated_errors
from service.db.tables import server_keys
from service.domain.models import utc_now

PAGE_TOKEN_KEY = "page_token"  # noqa: S105 - the name a key is stored under


async def load_or_create(engine: AsyncEngine, name: str) -> bytes:
    """The secret called `name`, created (32 random bytes) if there is none yet.

    Every worker and every restart serving this database gets the same secret, so a page
    token issued by one process is accepted by all. Concurrent first starts race on the
    primary key; the loser reads the winner's secret.
    """
    async with translated_errors():
        for _ in range(2):
            async with engine.connect() as connection:
                stored = await connection.scalar(
                    select(server_keys.c.secret).where(server_keys.c.name == name)
                )
            if stored is not None:
                return bytes.fromhex(stored)
            secret = secrets.token_bytes(32)
            try:
                async with engine.begin() as connection:
                    await execute(
                        connection,
                        insert(server_keys).values(
                            name=name, secret=secret.hex(), create_time=utc_now()
                        ),
                    )
            except KeyTakenError:
                continue  # a concurrent first start stored it: read the winner's
            return secret
    raise RuntimeError(f"server key {name!r} was neither readable nor creatable")
