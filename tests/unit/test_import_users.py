"""ImportUsers' pipeline on the in-memory ports: rows staged in chunks as they arrive,
created at the end or not at all, the first bad row named by its stream position."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import overload

import pytest

from service.domain import housekeeping, imports, users
from service.domain.bulk import RowInput
from service.domain.errors import (
    DatabaseUnavailableError,
    EmailTakenError,
    ImportExpiredError,
    ImportIdleError,
    InvalidArgumentError,
    RequestIdReusedError,
    UserNotFoundError,
)
from service.domain.models import utc_now
from service.domain.users import UserInput
from tests.unit.fakes import FakeDatabase, FakeUnitOfWorkFactory, Snapshot
from tests.unit.inputs import in_messages, person, rows, sent, then_silent

EMPTY = FakeDatabase().snapshot()


def with_row(stream: list[RowInput], index: int, row: RowInput) -> list[RowInput]:
    changed = list(stream)
    changed[index] = row
    return changed


def emails_by_id(database: FakeDatabase) -> list[str]:
    return [database.users.rows[i].email for i in sorted(database.users.rows)]


def only_users(snapshot: Snapshot) -> Snapshot:
    """What stays of an import: users and request_ids; no staging."""
    return replace(snapshot, imports={}, import_rows={})


async def test_rows_are_staged_in_chunks_in_order_and_created_at_the_end(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    stream = rows(0, 2500)
    before_each_stage: list[int] = []
    staged: list[list[int]] = []

    async def count_staged() -> None:
        before_each_stage.append(len(database.import_rows.rows))

    async def look_at_staging() -> None:
        assert database.users.rows == {}  # nothing visible before the stream ends
        staged.append([index for _, index in sorted(database.import_rows.rows)])

    database.before("imports.stage", count_staged, times=None)
    database.before("imports.promote", look_at_staging)
    count = await imports.import_users(units, sent(in_messages(stream, size=700)))
    assert count == 2500
    assert staged == [list(range(2500))]
    # Staged as the messages arrive, in chunks of at most 1000 rows.
    chunks = [b - a for a, b in itertools.pairwise([*before_each_stage, 2500])]
    assert before_each_stage[0] == 0
    assert len(chunks) >= 3
    assert max(chunks) <= 1000
    assert emails_by_id(database) == [f"user{n}@unit.test" for n in range(2500)]
    assert database.imports.rows == {}
    assert database.import_rows.rows == {}
    assert database.peak_open_writing == 1  # one write in flight at a time


async def test_an_empty_import_creates_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    assert await imports.import_users(units, sent([])) == 0
    assert await imports.import_users(units, sent([[], []])) == 0
    assert database.snapshot() == EMPTY


async def test_the_first_invalid_row_is_named_by_its_stream_position(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    stream = with_row(rows(0, 3000), 1500, RowInput(UserInput("Bad", "not-an-email")))
    stream = with_row(stream, 2100, RowInput(UserInput("", "late@unit.test")))
    with pytest.raises(InvalidArgumentError) as raised:
        await imports.import_users(units, sent(in_messages(stream)))
    assert [v.field for v in raised.value.violations] == ["requests[1500].user.email"]
    assert database.snapshot() == EMPTY
    assert "imports.discard" in database.calls  # the first chunk was staged, then dropped


async def test_an_email_repeated_across_chunks_names_the_later_row(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    stream = with_row(rows(0, 3000), 1500, RowInput(replace(person(10), name="Again")))
    with pytest.raises(EmailTakenError) as raised:
        await imports.import_users(units, sent(in_messages(stream)))
    assert raised.value.field == "requests[1500].user.email"
    assert raised.value.message.endswith("taken by an earlier row of this import")
    assert database.snapshot() == EMPTY


async def test_an_email_repeated_in_one_chunk_names_both_rows(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    stream = with_row(rows(0, 1500), 1400, RowInput(replace(person(1200), name="Again")))
    with pytest.raises(EmailTakenError) as raised:
        await imports.import_users(units, sent(in_messages(stream)))
    assert raised.value.field == "requests[1400].user.email"
    assert raised.value.message.endswith("taken by requests[1200] of this import")
    assert database.snapshot() == EMPTY


async def test_a_request_id_repeated_across_chunks_is_invalid_argument(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    stream = with_row(rows(0, 2000, request_ids=True), 1999, RowInput(person(5000), "row-3"))
    with pytest.raises(InvalidArgumentError) as raised:
        await imports.import_users(units, sent(in_messages(stream)))
    assert [v.field for v in raised.value.violations] == ["requests[1999].request_id"]
    assert database.snapshot() == EMPTY


async def test_a_stored_email_is_email_taken_and_nothing_is_created(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    await users.create_user(units, person(1234))
    before = database.snapshot()
    with pytest.raises(EmailTakenError) as raised:
        await imports.import_users(units, sent(in_messages(rows(0, 2000))))
    assert raised.value.field == "requests[1234].user.email"
    assert raised.value.message.endswith("taken by another user")
    assert database.snapshot() == before


async def test_an_earlier_chunks_error_wins_over_a_later_one_found_meanwhile(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    await users.create_user(units, person(999))
    before = database.snapshot()
    first, second = in_messages(with_row(rows(0, 2000), 1000, RowInput(None)))
    taken = asyncio.Event()
    # The first chunk's write waits in its first statement until the import has taken
    # the second message's rows: their invalid row is found while that write is in
    # flight, and the write's error (an earlier row) is still the one reported.
    database.before("imports.open", taken.wait)
    with pytest.raises(EmailTakenError) as raised:
        await imports.import_users(units, sent([first, Announcing(second, taken)]))
    assert database.unfired() == []
    assert raised.value.field == "requests[999].user.email"
    assert database.snapshot() == before


async def test_a_silent_client_is_aborted_and_its_staging_discarded(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    with pytest.raises(ImportIdleError) as raised:
        await imports.import_users(units, then_silent(in_messages(rows(0, 1000))), 0.05)
    assert raised.value.idle_seconds == 0.05
    assert database.calls.count("imports.stage") == 1
    assert database.calls[-1] == "commit"  # the discard's
    assert database.snapshot() == EMPTY


async def test_a_client_silent_from_the_start_is_aborted(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    with pytest.raises(ImportIdleError):
        await imports.import_users(units, then_silent([]), 0.01)
    assert database.calls == []


async def test_a_client_that_goes_away_leaves_no_staging(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    call = asyncio.create_task(imports.import_users(units, then_silent(in_messages(rows(0, 1000)))))
    for _ in range(1000):
        if database.import_rows.rows:
            break
        await asyncio.sleep(0)
    assert len(database.import_rows.rows) == 1000  # staged and committed
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert database.snapshot() == EMPTY


async def test_a_failed_chunk_write_keeps_nothing(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    database.fail("imports.stage", DatabaseUnavailableError(), skip=1)
    with pytest.raises(DatabaseUnavailableError):
        await imports.import_users(units, sent(in_messages(rows(0, 2500))))
    assert database.unfired() == []
    assert database.snapshot() == EMPTY


async def test_a_message_of_more_than_1000_rows_is_invalid_argument(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        await imports.import_users(units, sent([rows(0, 10), rows(10, 1011)]))
    assert [v.field for v in raised.value.violations] == ["requests"]
    assert "requests[10] has 1001" in raised.value.message
    assert database.snapshot() == EMPTY


async def test_an_email_stored_while_staging_fails_the_promotion(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    async def concurrent_create() -> None:
        await users.create_user(units, replace(person(700), name="Meanwhile"))

    database.before("imports.promote", concurrent_create)
    with pytest.raises(EmailTakenError) as raised:
        await imports.import_users(units, sent(in_messages(rows(0, 1500))))
    assert database.unfired() == []
    assert raised.value.field == "requests[700].user.email"
    assert [u.name for u in database.users.rows.values()] == ["Meanwhile"]
    assert database.import_rows.rows == {}


async def test_a_request_id_recorded_while_staging_fails_the_promotion(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    async def concurrent_import() -> None:
        await imports.import_users(units, sent([[RowInput(person(9000), "row-5")]]))

    database.before("imports.promote", concurrent_import)
    with pytest.raises(RequestIdReusedError) as raised:
        await imports.import_users(units, sent(in_messages(rows(0, 1200, request_ids=True))))
    assert [v.field for v in raised.value.violations] == ["requests[5].request_id"]
    assert emails_by_id(database) == ["user9000@unit.test"]
    assert database.import_rows.rows == {}


async def test_an_import_purged_as_abandoned_is_import_expired(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    async def purge_from_the_future() -> None:
        later = utc_now() + imports.STALE_AFTER + timedelta(minutes=1)
        assert (await housekeeping.purge_expired(units, later)).imports == 1

    database.before("imports.stage", purge_from_the_future, skip=1)
    with pytest.raises(ImportExpiredError):
        await imports.import_users(units, sent(in_messages(rows(0, 2500))))
    assert database.unfired() == []
    assert database.snapshot() == EMPTY


async def test_a_retried_import_replays_its_rows_and_counts_them(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    stream = rows(0, 1200, request_ids=True)
    assert await imports.import_users(units, sent(in_messages(stream))) == 1200
    done = database.snapshot()
    assert await imports.import_users(units, sent(in_messages(stream))) == 1200
    assert only_users(database.snapshot()) == only_users(done)
    # A retry that carries more rows creates only those.
    longer = rows(0, 2000, request_ids=True)
    assert await imports.import_users(units, sent(in_messages(longer))) == 2000
    assert emails_by_id(database) == [f"user{n}@unit.test" for n in range(2000)]


async def test_a_request_id_of_an_import_with_another_body_is_reused(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    await imports.import_users(units, sent([rows(0, 10, request_ids=True)]))
    before = database.snapshot()
    stream = with_row(rows(100, 1100), 1050 - 100, RowInput(person(5000), "row-3"))
    with pytest.raises(RequestIdReusedError) as raised:
        await imports.import_users(units, sent(in_messages(stream)))
    assert [v.field for v in raised.value.violations] == ["requests[950].request_id"]
    assert database.snapshot() == before


async def test_a_replayed_row_whose_user_was_deleted_is_not_found(
    database: FakeDatabase, units: FakeUnitOfWorkFactory
) -> None:
    await imports.import_users(units, sent([rows(0, 10, request_ids=True)]))
    deleted = min(database.users.rows)
    await users.delete_user(units, deleted, "", force=False)
    before = database.snapshot()
    with pytest.raises(UserNotFoundError) as raised:
        await imports.import_users(units, sent([rows(0, 10, request_ids=True)]))
    assert raised.value.resource_id == deleted
    assert database.snapshot() == before


class Announcing(Sequence[RowInput]):
    """A message that sets `taken` as soon as the import reads any of its rows."""

    def __init__(self, rows: Sequence[RowInput], taken: asyncio.Event) -> None:
        self._rows = rows
        self._taken = taken

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> RowInput: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[RowInput]: ...
    def __getitem__(self, index: int | slice) -> RowInput | Sequence[RowInput]:
        self._taken.set()
        return self._rows[index]
