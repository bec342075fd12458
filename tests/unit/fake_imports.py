"""The request_id and ImportUsers staging repositories of tests/unit/fakes.py: what
service/db/requests_store.py and import_store.py do, on dicts (see tests/unit/fake_users.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from service.domain.errors import StagedRepeatError
from service.domain.ports import ImportClashes, Remembered, RequestRecord, StagedClash, StagedUser
from tests.unit.fake_tables import ImportRecord, Session, Writes
from tests.unit.fake_users import add_user, stored_emails


class FakeRequests:
    def __init__(self, unit: Session) -> None:
        self._unit = unit

    async def find(self, method: str, request_id: str, since: datetime) -> RequestRecord | None:
        w = await self._unit.step("requests.find")
        record = w.requests.get((method, request_id))
        return record if record is not None and record.create_time >= since else None

    async def claim(
        self, method: str, request_id: str, fingerprint: str, now: datetime, since: datetime
    ) -> bool:
        w = await self._unit.step("requests.claim", writes=True)
        _forget_expired(w, method, [request_id], since)
        if w.requests.get((method, request_id)) is not None:
            return False  # pk_request_ids: a concurrent call claimed it first
        w.requests.insert((method, request_id), RequestRecord(fingerprint, None, now))
        return True

    async def attach(self, method: str, request_id: str, resource_id: int) -> None:
        w = await self._unit.step("requests.attach", writes=True)
        record = w.requests.get((method, request_id))
        if record is not None:
            w.requests.update((method, request_id), replace(record, resource_id=resource_id))

    async def find_many(
        self, method: str, keys: Sequence[str], since: datetime
    ) -> dict[str, RequestRecord]:
        w = await self._unit.step("requests.find_many")
        found = {key: w.requests.get((method, key)) for key in keys}
        return {k: r for k, r in found.items() if r is not None and r.create_time >= since}

    async def remember_many(
        self, method: str, records: Sequence[Remembered], now: datetime, since: datetime
    ) -> bool:
        w = await self._unit.step("requests.remember_many", writes=True)
        keys = [r.request_id for r in records]
        _forget_expired(w, method, keys, since)
        if len(set(keys)) < len(keys) or any(w.requests.get((method, k)) for k in keys):
            return False  # one INSERT: none of the rows is written
        for r in records:
            w.requests.insert(
                (method, r.request_id), RequestRecord(r.fingerprint, r.resource_id, now)
            )
        return True

    async def purge(self, before: datetime) -> int:
        w = await self._unit.step("requests.purge", writes=True)
        expired = [key for key, record in w.requests.items() if record.create_time < before]
        for key in expired:
            w.requests.delete(key)
        return len(expired)


def _forget_expired(w: Writes, method: str, keys: Sequence[str], since: datetime) -> None:
    # An expired record of the same id would block the insert; it is forgotten.
    for key in keys:
        record = w.requests.get((method, key))
        if record is not None and record.create_time < since:
            w.requests.delete((method, key))


class FakeImports:
    def __init__(self, unit: Session) -> None:
        self._unit = unit

    async def open(self, import_id: str, now: datetime) -> None:
        w = await self._unit.step("imports.open", writes=True)
        w.imports.insert(import_id, ImportRecord(now, now))

    async def taken_emails(self, emails: Sequence[str]) -> set[str]:
        w = await self._unit.step("imports.taken_emails")
        return set(emails) & stored_emails(w)

    async def clashes(
        self, import_id: str, emails: Sequence[str], request_ids: Sequence[str]
    ) -> ImportClashes:
        w = await self._unit.step("imports.clashes")
        staged = _staged(w, import_id)
        return ImportClashes(
            staged_emails=set(emails) & {row.user.email for row in staged},
            stored_emails=set(emails) & stored_emails(w),
            staged_request_ids=set(request_ids) & {row.request_id for row in staged},
        )

    async def stage(self, import_id: str, rows: Sequence[StagedUser], now: datetime) -> bool:
        w = await self._unit.step("imports.stage", writes=True)
        if not _touched(w, import_id, now):
            return False
        staged = _staged(w, import_id)
        emails = {row.user.email for row in staged}
        request_ids = {row.request_id for row in staged if row.request_id}
        indexes = {row.stream_index for row in staged}
        for row in rows:  # the unique keys of import_rows, checked before anything is written
            if row.user.email in emails or row.request_id in request_ids:
                raise StagedRepeatError()
            if row.stream_index in indexes:
                raise StagedRepeatError()
            emails.add(row.user.email)
            indexes.add(row.stream_index)
            if row.request_id:
                request_ids.add(row.request_id)
        for row in rows:
            w.import_rows.insert((import_id, row.stream_index), row)
        return True

    async def promote(
        self, import_id: str, method: str, now: datetime, since: datetime
    ) -> int | StagedClash | None:
        w = await self._unit.step("imports.promote", writes=True)
        if not _touched(w, import_id, now):
            return None
        staged = _staged(w, import_id)
        taken = stored_emails(w)
        for row in staged:
            if row.user.email in taken:
                return StagedClash(row.stream_index, row.user.email, "")
            record = w.requests.get((method, row.request_id)) if row.request_id else None
            if record is not None and record.create_time >= since:
                return StagedClash(row.stream_index, row.user.email, row.request_id)
        _forget_expired(w, method, [row.request_id for row in staged if row.request_id], since)
        for row in staged:  # ids follow the stream's order
            user_id = add_user(w, self._unit, row.user, now, taken)
            if row.request_id:
                record = RequestRecord(row.user.fingerprint(), user_id, now)
                w.requests.insert((method, row.request_id), record)
        return len(staged)

    async def discard(self, import_id: str) -> None:
        w = await self._unit.step("imports.discard", writes=True)
        _discard(w, import_id)

    async def stale(self, before: datetime) -> list[str]:
        w = await self._unit.step("imports.stale")
        return [key for key, record in w.imports.items() if record.heartbeat_time < before]

    async def discard_if_stale(self, import_id: str, before: datetime) -> bool:
        w = await self._unit.step("imports.discard_if_stale", writes=True)
        record = w.imports.get(import_id)
        if record is None or record.heartbeat_time >= before:
            return False
        _discard(w, import_id)
        return True


def _staged(w: Writes, import_id: str) -> list[StagedUser]:
    rows = [row for (key, _), row in w.import_rows.items() if key == import_id]
    return sorted(rows, key=lambda row: row.stream_index)


def _touched(w: Writes, import_id: str, now: datetime) -> bool:
    record = w.imports.get(import_id)
    if record is None:
        return False  # purged meanwhile
    w.imports.update(import_id, replace(record, heartbeat_time=now))
    return True


def _discard(w: Writes, import_id: str) -> None:
    w.imports.delete(import_id)
    for key, _ in w.import_rows.items():
        if key[0] == import_id:
            w.import_rows.delete(key)
