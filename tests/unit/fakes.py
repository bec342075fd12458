"""In-memory fakes of service/domain/ports.py, so the use cases run with no database.

A FakeDatabase holds committed rows. A unit reads them through its own pending writes
(READ COMMITTED: it sees what other units committed meanwhile) and publishes its writes
on commit(); leaving without commit() throws them away. Ids come from counters that a
rollback does not reset, as database sequences behave.

Races and failures are put between two port calls by hooks, not left to the scheduler:
`database.before("requests.claim", other_call)` runs `other_call` (typically another use
case against the same database, run to its end) when the unit next calls `claim`, and
`database.fail("imports.stage", error)` makes that call raise. A hook that must fire for
the test to mean anything is checked with `database.unfired()`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Self

from service.domain.models import Address, NewUser, User, View
from service.domain.ports import RequestRecord, StagedUser, UnitOfWorkFactory
from service.domain.queries import Cursor, PageTokenError, UsersPageQuery
from tests.unit.fake_imports import FakeImports, FakeRequests
from tests.unit.fake_tables import (
    FakeConflictError,
    ImportRecord,
    Tables,
    Writes,
)
from tests.unit.fake_users import FakeAddresses, FakeBulkUsers, FakeUsers

Action = Callable[[], Awaitable[object]]


class WriteInReadingUnitError(Exception):
    """A use case wrote through a unit it opened with reading()."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every committed row, to assert that nothing changed."""

    users: dict[int, User]
    addresses: dict[int, Address]
    requests: dict[tuple[str, str], RequestRecord]
    imports: dict[str, ImportRecord]
    import_rows: dict[tuple[str, int], StagedUser]


@dataclass(slots=True)
class _Hook:
    call: str
    action: Action
    skip: int
    times: int | None
    fired: int = 0


@dataclass(slots=True)
class FakeDatabase(Tables):
    calls: list[str] = field(default_factory=list)  # every port call, in order
    commits: int = 0
    open_writing: int = 0
    peak_open_writing: int = 0  # most writing units open at once
    _hooks: list[_Hook] = field(default_factory=list)

    def units(self) -> FakeUnitOfWorkFactory:
        return FakeUnitOfWorkFactory(self)

    def before(self, call: str, action: Action, *, skip: int = 0, times: int | None = 1) -> None:
        """Runs `action` when a unit next makes `call` (e.g. "requests.claim", "commit"),
        after `skip` such calls, `times` times (None: every time)."""
        self._hooks.append(_Hook(call, action, skip, times))

    def fail(self, call: str, error: BaseException, *, skip: int = 0) -> None:
        """Makes the next `call` (after `skip` of them) raise `error`."""

        async def raise_it() -> None:
            raise error

        self.before(call, raise_it, skip=skip)

    def unfired(self) -> list[str]:
        return [hook.call for hook in self._hooks if hook.fired == 0]

    def snapshot(self) -> Snapshot:
        return Snapshot(
            dict(self.users.rows),
            dict(self.addresses.rows),
            dict(self.requests.rows),
            dict(self.imports.rows),
            dict(self.import_rows.rows),
        )

    async def run_hooks(self, call: str) -> None:
        for hook in [hook for hook in self._hooks if hook.call == call]:
            if hook.skip > 0:
                hook.skip -= 1
                continue
            if hook.times is not None:
                if hook.times == 0:
                    continue
                hook.times -= 1
            hook.fired += 1
            await hook.action()

    def publish(self, writes: Writes) -> None:
        users = writes.users.published()
        addresses = writes.addresses.published()
        requests = writes.requests.published()
        imports = writes.imports.published()
        import_rows = writes.import_rows.published()
        _check_constraints(users, addresses, import_rows)
        self.users.rows, self.addresses.rows, self.requests.rows = users, addresses, requests
        self.imports.rows, self.import_rows.rows = imports, import_rows
        self.commits += 1


def _check_constraints(
    users: dict[int, User],
    addresses: dict[int, Address],
    import_rows: dict[tuple[str, int], StagedUser],
) -> None:
    """The unique and foreign keys of service/db/tables.py, over the state to commit."""
    _unique("uq_users_email", (user.email for user in users.values()))
    _unique("uq_addresses_user_id_email", ((a.user_id, a.email) for a in addresses.values()))
    if any(address.user_id not in users for address in addresses.values()):
        raise FakeConflictError("fk_addresses_user_id")
    staged = [(import_id, row) for (import_id, _), row in import_rows.items()]
    _unique("uq_import_rows_import_id_email", ((i, row.user.email) for i, row in staged))
    _unique(
        "uq_import_rows_import_id_request_id",
        ((i, row.request_id) for i, row in staged if row.request_id),
    )


def _unique(constraint: str, values: Iterable[object]) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise FakeConflictError(f"{constraint}: {value!r} twice")
        seen.add(value)


class FakeUnit:
    """A unit of work over a FakeDatabase; reading() units refuse writes and commit()."""

    def __init__(self, database: FakeDatabase, *, writing: bool) -> None:
        self._database = database
        self._writing = writing
        self._writes: Writes | None = None
        self._users = FakeUsers(self)
        self._addresses = FakeAddresses(self)
        self._requests = FakeRequests(self)
        self._bulk = FakeBulkUsers(self)
        self._imports = FakeImports(self)

    def new_id(self, table: str) -> int:
        return self._database.new_id(table)

    @property
    def users(self) -> FakeUsers:
        return self._users

    @property
    def addresses(self) -> FakeAddresses:
        return self._addresses

    @property
    def requests(self) -> FakeRequests:
        return self._requests

    @property
    def bulk(self) -> FakeBulkUsers:
        return self._bulk

    @property
    def imports(self) -> FakeImports:
        return self._imports

    async def step(self, call: str, *, writes: bool = False) -> Writes:
        """Every port call starts here: it is recorded, and its hooks run."""
        if self._writes is None:
            raise RuntimeError(f"{call} outside the unit's `async with`")
        if writes and not self._writing:
            raise WriteInReadingUnitError(call)
        self._database.calls.append(call)
        await self._database.run_hooks(call)
        return self._writes

    async def __aenter__(self) -> Self:
        if self._writes is not None:
            raise RuntimeError("a unit is entered once")
        self._writes = Writes(self._database)
        if self._writing:
            self._database.open_writing += 1
            self._database.peak_open_writing = max(
                self._database.peak_open_writing, self._database.open_writing
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._writes = None  # whatever was not committed is gone
        if self._writing:
            self._database.open_writing -= 1

    async def commit(self) -> None:
        if not self._writing:
            raise RuntimeError("a reading unit has nothing to commit")
        writes = await self.step("commit")
        self._database.publish(writes)
        # As after COMMIT on a connection: later statements start a new transaction.
        self._writes = Writes(self._database)


class FakeUnitOfWorkFactory:
    def __init__(self, database: FakeDatabase) -> None:
        self.database = database

    def reading(self, *, stale_ok: bool = False) -> FakeUnit:
        return FakeUnit(self.database, writing=False)

    async def read_user(self, user_id: int, view: View) -> User | None:
        async with self.reading() as uow:
            return await uow.users.get_one(user_id, view)

    def writing(self) -> FakeUnit:
        return FakeUnit(self.database, writing=True)

    async def read_users_page(self, query: UsersPageQuery) -> Sequence[User]:
        async with self.reading(stale_ok=True) as uow:
            return await uow.users.list_page(query)

    async def create_user(self, new: NewUser, now: datetime) -> User:
        async with self.writing() as uow:
            created = await uow.users.create(new, now)
            await uow.commit()
        return created


class FakePageTokens:
    """PageTokens that remember what they issued: opaque, and bound to their scope."""

    def __init__(self) -> None:
        self._issued: dict[str, tuple[str, Cursor]] = {}

    def issue(self, scope: str, cursor: Cursor) -> str:
        token = f"page-{len(self._issued) + 1}"
        self._issued[token] = (scope, cursor)
        return token

    def read(self, scope: str, token: str) -> Cursor:
        issued = self._issued.get(token)
        if issued is None or issued[0] != scope:
            raise PageTokenError("is not a page token of this request")
        return issued[1]


# mypy checks here that the fakes implement every port.
_CONFORMS: Callable[[FakeDatabase], UnitOfWorkFactory] = FakeUnitOfWorkFactory
