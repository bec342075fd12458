"""Housekeeping: forget expired request_ids, discard the staging of abandoned imports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.domain.imports import STALE_AFTER
from service.domain.models import utc_now
from service.domain.ports import UnitOfWorkFactory
from service.domain.users import REQUEST_ID_TTL

# The server runs a purge at start and then this often (service/server.py).
PURGE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Purged:
    request_ids: int
    imports: int


async def purge_expired(new_uow: UnitOfWorkFactory, now: datetime | None = None) -> Purged:
    """API.md: request_ids are remembered for at least REQUEST_ID_TTL, then forgotten.

    An import whose process died (no heartbeat for STALE_AFTER) left staged rows that no
    finally-block removed; they are discarded one import per transaction.
    """
    now = utc_now() if now is None else now
    async with new_uow.writing() as uow:
        forgotten = await uow.requests.purge(now - REQUEST_ID_TTL)
        await uow.commit()
    async with new_uow.reading() as uow:
        stale = await uow.imports.stale(now - STALE_AFTER)
    discarded = 0
    for import_id in stale:
        async with new_uow.writing() as uow:
            # Re-checked under the row's lock: an import alive again is left alone.
            if await uow.imports.discard_if_stale(import_id, now - STALE_AFTER):
                discarded += 1
            await uow.commit()
    return Purged(request_ids=forgotten, imports=discarded)
