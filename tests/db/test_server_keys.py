"""The page-token key kept in the database: created once, the same for every process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.db import server_keys
from service.db.engine import create_engine
from service.db.migrate import upgrade
from tests.backends import fresh_database


async def test_concurrent_first_starts_agree_on_one_key(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as url:
        # Separate engines, as separate worker processes would have.
        engines = [create_engine(url, pool_size=1) for _ in range(4)]
        try:
            await upgrade(engines[0])
            keys = await asyncio.gather(
                *(server_keys.load_or_create(e, server_keys.PAGE_TOKEN_KEY) for e in engines)
            )
            assert len(set(keys)) == 1 and len(keys[0]) == 32
            # A restart reads the same key back; another name is another key.
            again = await server_keys.load_or_create(engines[1], server_keys.PAGE_TOKEN_KEY)
            assert again == keys[0]
            assert await server_keys.load_or_create(engines[2], "other") != keys[0]
        finally:
            for engine in engines:
                await engine.dispose()
