"""The storage of tests/unit/fakes.py: committed tables, and a unit's writes over them.

Kept apart from the units and the repositories so that both import it, not each other.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from service.domain.models import Address, User
from service.domain.ports import RequestRecord, StagedUser

K = TypeVar("K")
V = TypeVar("V")


class FakeConflictError(Exception):
    """Two units wrote the same row, or committed rows that break a constraint: a real
    database would have made one wait for the other, so the test's race cannot happen."""


class Table(Generic[K, V]):
    """One table's committed rows, by key."""

    def __init__(self) -> None:
        self.rows: dict[K, V] = {}


class Pending(Generic[K, V]):
    """A unit's writes to one table, read over the rows committed so far."""

    def __init__(self, table: Table[K, V]) -> None:
        self._table = table
        self._written: dict[K, V | None] = {}  # None: deleted
        self._base: dict[K, V | None] = {}  # the committed row each write replaced

    def get(self, key: K) -> V | None:
        if key in self._written:
            return self._written[key]
        return self._table.rows.get(key)

    def items(self) -> list[tuple[K, V]]:
        return list(self._merged(self._table.rows).items())

    def values(self) -> list[V]:
        return [row for _, row in self.items()]

    def insert(self, key: K, row: V) -> None:
        if self.get(key) is not None:
            raise FakeConflictError(f"duplicate key {key!r}")
        self._write(key, row)

    def update(self, key: K, row: V) -> None:
        assert self.get(key) is not None, f"no row {key!r} to update"
        self._write(key, row)

    def delete(self, key: K) -> None:
        if self.get(key) is not None:
            self._write(key, None)

    def published(self) -> dict[K, V]:
        """The table as committing these writes leaves it."""
        for key, base in self._base.items():
            if self._table.rows.get(key) is not base:
                raise FakeConflictError(f"row {key!r} was written by two units at once")
        return self._merged(self._table.rows)

    def _write(self, key: K, row: V | None) -> None:
        self._base.setdefault(key, self._table.rows.get(key))
        self._written[key] = row

    def _merged(self, committed: dict[K, V]) -> dict[K, V]:
        merged = dict(committed)
        for key, row in self._written.items():
            if row is None:
                merged.pop(key, None)
            else:
                merged[key] = row
        return merged


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """A row of `imports`: an ImportUsers call with staged rows, and its last sign of life."""

    create_time: datetime
    heartbeat_time: datetime


@dataclass(slots=True)
class Tables:
    """Every table's committed rows, and the id sequences (a rollback does not reset them)."""

    users: Table[int, User] = field(default_factory=Table)
    addresses: Table[int, Address] = field(default_factory=Table)
    requests: Table[tuple[str, str], RequestRecord] = field(default_factory=Table)
    imports: Table[str, ImportRecord] = field(default_factory=Table)
    import_rows: Table[tuple[str, int], StagedUser] = field(default_factory=Table)
    _ids: dict[str, itertools.count[int]] = field(default_factory=dict)

    def new_id(self, table: str) -> int:
        return next(self._ids.setdefault(table, itertools.count(1)))


class Writes:
    """One unit's pending writes, a Pending per table."""

    def __init__(self, tables: Tables) -> None:
        self.users = Pending(tables.users)
        self.addresses = Pending(tables.addresses)
        self.requests = Pending(tables.requests)
        self.imports = Pending(tables.imports)
        self.import_rows = Pending(tables.import_rows)


class Session(Protocol):
    """What a repository needs of its unit."""

    async def step(self, call: str, *, writes: bool = False) -> Writes:
        """Records the call and runs its hooks; the unit's writes, to work on."""
        ...

    def new_id(self, table: str) -> int: ...
