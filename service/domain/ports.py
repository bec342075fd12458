"""What the use cases need from storage; service/db implements it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from service.domain.models import Address, Change, NewUser, User, UserChanges, View
from service.domain.queries import UserFilter, UsersPageQuery
from service.domain.rows import RowBatch


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """A remembered request_id: which body it carried and what it created."""

    fingerprint: str
    resource_id: int | None
    create_time: datetime


class UsersRepository(Protocol):
    async def insert(self, new: NewUser, now: datetime) -> int:
        """Inserts the user and its addresses; EmailTakenError if the email is taken."""
        ...

    async def create(self, new: NewUser, now: datetime) -> User:
        """As insert, and returns the user as stored (FULL view); a single statement
        when the user has no addresses."""
        ...

    async def get_one(self, user_id: int, view: View) -> User | None: ...
    async def get_many(self, ids: Sequence[int], view: View) -> dict[int, User]: ...

    async def get_for_update(self, user_id: int) -> User | None:
        """BASIC view, row locked until the transaction ends."""
        ...

    async def update(self, user_id: int, changes: UserChanges, now: datetime) -> None:
        """Writes the changes and bumps the version; EmailTakenError on a taken email."""
        ...

    async def count_addresses(self, user_id: int) -> int: ...

    async def delete(self, user_id: int) -> None:
        """Deletes the user and its addresses."""
        ...

    async def list_page(self, query: UsersPageQuery) -> Sequence[User]:
        """Up to query.limit users after query.after, in query.ordering; addresses if FULL."""
        ...

    async def stream_rows(
        self, user_filter: UserFilter, after_id: int, limit: int, *, with_addresses: bool
    ) -> RowBatch:
        """Up to `limit` matching users with id > after_id, by id, as plain rows."""
        ...


class AddressesRepository(Protocol):
    """Every address write also bumps its user's version and update_time (API.md)."""

    async def get(self, address_id: int) -> Address | None: ...

    async def get_for_update(self, address_id: int) -> Address | None:
        """The latest row, locked; callers lock the owning user first."""
        ...

    async def insert(self, user_id: int, email: str, now: datetime) -> int:
        """Adds the address; AddressExistsError if the user has the email already."""
        ...

    async def update_email(self, address_id: int, user_id: int, email: str, now: datetime) -> None:
        """AddressExistsError if another address of the user has the email."""
        ...

    async def delete(self, address_id: int, user_id: int, now: datetime) -> None: ...

    async def list_page(self, user_id: int, after_id: int | None, limit: int) -> Sequence[Address]:
        """Up to `limit` of the user's addresses with an id above after_id, by id."""
        ...


class RequestsRepository(Protocol):
    async def find(self, method: str, request_id: str, since: datetime) -> RequestRecord | None:
        """The record of a request_id used since `since`, else None."""
        ...

    async def claim(
        self, method: str, request_id: str, fingerprint: str, now: datetime, since: datetime
    ) -> bool:
        """Records a request_id; False if a concurrent call claimed it first."""
        ...

    async def attach(self, method: str, request_id: str, resource_id: int) -> None: ...

    async def find_many(
        self, method: str, keys: Sequence[str], since: datetime
    ) -> dict[str, RequestRecord]:
        """The records of those request_ids used since `since`, by request_id."""
        ...

    async def remember_many(
        self, method: str, records: Sequence[Remembered], now: datetime, since: datetime
    ) -> bool:
        """Records request_ids with what they created; False if one was recorded meanwhile."""
        ...

    async def purge(self, before: datetime) -> int:
        """Forgets request_ids recorded before `before`; returns how many."""
        ...


@dataclass(frozen=True, slots=True)
class Remembered:
    """A request_id to record, with the body's fingerprint and the user it created."""

    request_id: str
    fingerprint: str
    resource_id: int


class BulkUsersRepository(Protocol):
    async def insert_many(self, news: Sequence[NewUser], now: datetime) -> list[int]:
        """Inserts users and their addresses with multi-row statements; ids in input order.

        EmailTakenError naming the first of `news` whose email is taken (the emails of
        `news` are distinct)."""
        ...


@dataclass(frozen=True, slots=True)
class StagedUser:
    """A checked ImportUsers row, waiting in staging; `stream_index` is its position."""

    stream_index: int
    user: NewUser
    request_id: str  # "" when the row carries none


@dataclass(frozen=True, slots=True)
class ImportClashes:
    """Which of a batch's values already exist: staged by this import, or stored."""

    staged_emails: set[str]
    stored_emails: set[str]
    staged_request_ids: set[str]


@dataclass(frozen=True, slots=True)
class StagedClash:
    """A staged row that can no longer be created: its email or request_id is taken now."""

    stream_index: int
    email: str
    request_id: str  # set when the request_id clashed rather than the email


class ImportsRepository(Protocol):
    """Staging for ImportUsers; each method runs inside the caller's transaction."""

    async def open(self, import_id: str, now: datetime) -> None: ...

    async def taken_emails(self, emails: Sequence[str]) -> set[str]:
        """Which of `emails` stored users hold."""
        ...

    async def clashes(
        self, import_id: str, emails: Sequence[str], request_ids: Sequence[str]
    ) -> ImportClashes:
        """Which of the values the import staged already, and which emails are stored."""
        ...

    async def stage(self, import_id: str, rows: Sequence[StagedUser], now: datetime) -> bool:
        """Adds rows and marks the import alive; False if the import was purged meanwhile.

        Raises StagedRepeatError when a row repeats one staged before; the transaction
        is then unusable on PostgreSQL and must be rolled back."""
        ...

    async def promote(
        self, import_id: str, method: str, now: datetime, since: datetime
    ) -> int | StagedClash | None:
        """Creates every staged user, address and request_id record; returns how many users.

        A StagedClash when a row collides with something stored since it was staged
        (nothing is then written); None if the import was purged meanwhile."""
        ...

    async def discard(self, import_id: str) -> None:
        """Deletes the import's staging rows."""
        ...

    async def stale(self, before: datetime) -> list[str]:
        """Imports whose last sign of life is older than `before`."""
        ...

    async def discard_if_stale(self, import_id: str, before: datetime) -> bool:
        """Deletes a stale import's staging rows unless it came alive meanwhile."""
        ...


class ReadingUnit(Protocol):
    """Statements that only read; no transaction to commit (a backend may run each
    statement on its own, as READ COMMITTED would see it anyway)."""

    @property
    def users(self) -> UsersRepository: ...

    @property
    def addresses(self) -> AddressesRepository: ...

    @property
    def requests(self) -> RequestsRepository: ...

    @property
    def bulk(self) -> BulkUsersRepository: ...

    @property
    def imports(self) -> ImportsRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class UnitOfWork(ReadingUnit, Protocol):
    """One transaction, however many statements: commit() makes it durable; leaving
    without it rolls every statement back."""

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    """A new unit per use case, of the kind the use case says it needs."""

    def reading(self, *, stale_ok: bool = False) -> ReadingUnit:
        """`stale_ok`: the use case accepts data a read replica may have a few seconds
        behind (--max-replica-lag); never for reads a client compares etags with."""
        ...

    def writing(self) -> UnitOfWork: ...

    # Calls whose whole work may be one statement, which needs no unit around it:
    # a backend may run it on a connection taken for it alone, without a transaction
    # (atomic as any statement is).

    async def read_user(self, user_id: int, view: View) -> User | None:
        """GetUser's read, from the primary."""
        ...

    async def read_users_page(self, query: UsersPageQuery) -> Sequence[User]:
        """ListUsers' page, as UsersRepository.list_page in a reading unit that may read
        a replica (stale_ok). A BASIC page is one statement."""
        ...

    async def create_user(self, new: NewUser, now: datetime) -> User:
        """CreateUser without a request_id: as UsersRepository.create in a writing unit,
        committed. A user without addresses is one statement, its change record
        written by the same statement."""
        ...


@dataclass(frozen=True, slots=True)
class ChangeLogState:
    last_position: int  # every change up to here is numbered and committed
    purged_through: int  # changes up to here were forgotten (retention)


class ChangeLog(Protocol):
    """The database's change log (db/change_log.py), as the change feed uses it."""

    # True when the database wakes wait_for_changes (PostgreSQL NOTIFY): poll rarely.
    signalled: bool

    async def state(self) -> ChangeLogState: ...

    async def sequence(self, limit: int) -> int:
        """Numbers up to `limit` committed, unnumbered changes; how many it numbered."""
        ...

    async def read(self, after: int, through: int, email_domain: str) -> list[Change]:
        """Changes at positions (after, through], oldest first; of one domain if given."""
        ...

    async def purge(self, before: datetime, limit: int) -> int:
        """Forgets up to `limit` of the oldest changes numbered before `before`."""
        ...

    async def wait_for_changes(self, seconds: float) -> None:
        """Returns when a write may have added changes, or after `seconds`."""
        ...

    async def close(self) -> None: ...
