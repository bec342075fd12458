"""What the use cases need from storage; service/db implements it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from service.domain.models import NewUser, User, UserChanges, View


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


class UnitOfWork(Protocol):
    """One transaction: commit() makes it durable; leaving without it rolls back."""

    @property
    def users(self) -> UsersRepository: ...

    @property
    def requests(self) -> RequestsRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
