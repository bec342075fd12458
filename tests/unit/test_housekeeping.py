"""Housekeeping on the in-memory ports: expired request_ids forgotten, abandoned
imports discarded, everything else kept."""

from __future__ import annotations

from datetime import timedelta

from service.domain import housekeeping, users
from service.domain.imports import STALE_AFTER
from service.domain.models import utc_now
from service.domain.ports import StagedUser
from service.domain.users import REQUEST_ID_TTL
from service.domain.validation import Violations
from tests.unit.fakes import FakeDatabase, FakeUnitOfWorkFactory
from tests.unit.inputs import person


async def test_request_ids_older_than_the_ttl_are_forgotten(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    now = utc_now()
    async with units.writing() as uow:
        for name, age in (("old", REQUEST_ID_TTL + timedelta(seconds=1)), ("new", timedelta())):
            await uow.requests.claim("CreateUser", name, "fp", now - age, now - 2 * age)
        await uow.commit()
    purged = await housekeeping.purge_expired(units, now)
    assert (purged.request_ids, purged.imports) == (1, 0)
    assert list(database.requests.rows) == [("CreateUser", "new")]


async def test_only_imports_without_a_recent_heartbeat_are_discarded(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    now = utc_now()
    row = StagedUser(0, users.validate_new_user(Violations(), "", person(1), ""), "")
    long_ago, lately = now - STALE_AFTER - timedelta(seconds=1), now - timedelta(minutes=1)
    async with units.writing() as uow:
        for import_id, heartbeat in (("abandoned", long_ago), ("alive", lately)):
            await uow.imports.open(import_id, heartbeat)
            assert await uow.imports.stage(import_id, [row], heartbeat)
        await uow.commit()
    purged = await housekeeping.purge_expired(units, now)
    assert purged.imports == 1
    assert list(database.imports.rows) == ["alive"]
    assert list(database.import_rows.rows) == [("alive", 0)]


async def test_an_import_that_comes_alive_before_its_discard_is_kept(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    now = utc_now()
    async with units.writing() as uow:
        await uow.imports.open("late", now - STALE_AFTER * 2)
        await uow.commit()

    async def heartbeat() -> None:
        async with units.writing() as uow:
            assert await uow.imports.stage("late", [], now)
            await uow.commit()

    # Listed as stale, then a chunk arrives before the purge takes its lock.
    database.before("imports.discard_if_stale", heartbeat)
    purged = await housekeeping.purge_expired(units, now)
    assert database.unfired() == []
    assert purged.imports == 0
    assert list(database.imports.rows) == ["late"]
