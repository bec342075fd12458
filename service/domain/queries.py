"""The values a listing is made of: orderings, cursors, filters, page queries and pages;
listing.py holds the rules and the ListUsers use case, ports.py the storage they need."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from service.domain.models import User, View

DEFAULT_PAGE_SIZE = 50
PAGE_MAX = 1000
FULL_PAGE_MAX = 200

T = TypeVar("T")


class SortField(enum.Enum):
    ID = "id"
    CREATE_TIME = "create_time"
    NAME = "name"
    EMAIL = "email"


SortKey = int | str | datetime
KEY_TYPES: dict[SortField, type] = {
    SortField.ID: int,
    SortField.CREATE_TIME: datetime,
    SortField.NAME: str,
    SortField.EMAIL: str,
}
ORDER_HINT = "use id, create_time, name or email, optionally followed by ' desc'"


@dataclass(frozen=True, slots=True)
class Ordering:
    """An order_by (AIP-132); ties are always broken by id in the same direction."""

    field: SortField = SortField.ID
    descending: bool = False

    @property
    def text(self) -> str:
        return self.field.value + (" desc" if self.descending else "")

    def key_of(self, user: User) -> SortKey:
        if self.field is SortField.CREATE_TIME:
            return user.create_time
        if self.field is SortField.NAME:
            return user.name
        if self.field is SortField.EMAIL:
            return user.email
        return user.id


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the last row's sort key and id (keyset, never OFFSET)."""

    key: SortKey
    id: int


@dataclass(frozen=True, slots=True)
class UserFilter:
    """Normalised (lower-cased) filters; an empty one filters nothing."""

    email: str = ""
    email_domain: str = ""
    address_email_contains: str = ""


@dataclass(frozen=True, slots=True)
class UsersPageQuery:
    filter: UserFilter
    ordering: Ordering
    after: Cursor | None
    limit: int
    view: View


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str  # empty on the last page


@dataclass(frozen=True, slots=True)
class ListUsersInput:
    """A ListUsersRequest as a client sent it, before validation."""

    page_size: int = 0
    page_token: str = ""
    email_domain: str = ""
    address_email_contains: str = ""
    email: str = ""
    order_by: str = ""
    view: View = View.BASIC


class PageTokenError(ValueError):
    """A page token that cannot be honoured; the message tells the client why."""


class PageTokens(Protocol):
    """Issues and reads opaque page tokens bound to a scope (method, parent, filters, order)."""

    def issue(self, scope: str, cursor: Cursor) -> str: ...

    def read(self, scope: str, token: str) -> Cursor:
        """The cursor inside; PageTokenError if garbled, forged or issued for another scope."""
        ...
