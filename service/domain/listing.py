"""Listing rules of API.md: page sizes, order_by, filters, page tokens, and ListUsers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from service.domain import validation as check
from service.domain.models import User, View
from service.domain.ports import UnitOfWorkFactory
from service.domain.queries import (
    DEFAULT_PAGE_SIZE,
    FULL_PAGE_MAX,
    KEY_TYPES,
    ORDER_HINT,
    PAGE_MAX,
    Cursor,
    ListUsersInput,
    Ordering,
    Page,
    PageTokenError,
    PageTokens,
    SortField,
    T,
    UserFilter,
    UsersPageQuery,
)


def check_page_size(found: check.Violations, field: str, value: int, cap: int) -> int:
    # API.md: 0 means 50, negative is invalid, anything above the cap is the cap.
    if value < 0:
        found.add(field, f"must not be negative, got {value}")
        return DEFAULT_PAGE_SIZE
    if value == 0:
        return min(DEFAULT_PAGE_SIZE, cap)
    return min(value, cap)


def parse_order_by(found: check.Violations, field: str, text: str) -> Ordering:
    # AIP-132: redundant spaces are insignificant; anything else is an error, not a guess.
    words = [word for word in text.split(" ") if word]
    fields = {f.value: f for f in SortField}
    if not words:
        return Ordering()
    if words[0] in fields and (words[1:] == [] or words[1:] == ["desc"]):
        return Ordering(fields[words[0]], descending=len(words) == 2)
    found.add(field, f"cannot order by {text[:60]!r}: {ORDER_HINT}")
    return Ordering()


def check_user_filter(
    found: check.Violations, email_domain: str, address_email_contains: str, email: str
) -> UserFilter:
    before = len(found.items)
    check.check_filter_text(found, "email_domain", email_domain)
    if "@" in email_domain and len(found.items) == before:
        found.add("email_domain", "is the part after '@' only, e.g. example.com")
    check.check_filter_text(found, "address_email_contains", address_email_contains)
    check.check_filter_text(found, "email", email)
    # Stored emails are lower-cased, so lower-casing the filters makes them case-insensitive.
    return UserFilter(
        email=email.lower(),
        email_domain=email_domain.lower(),
        address_email_contains=address_email_contains.lower(),
    )


def users_scope(user_filter: UserFilter, ordering: Ordering) -> str:
    # API.md: a token is valid only for the method, filters and order_by that issued it.
    # NUL cannot occur in a valid filter, so the parts cannot run into each other.
    parts = (
        "ListUsers",
        ordering.text,
        user_filter.email,
        user_filter.email_domain,
        user_filter.address_email_contains,
    )
    return "\x00".join(parts)


def addresses_scope(user_id: int) -> str:
    # API.md: a token is valid only for the method and parent (user) that issued it.
    return f"ListAddresses\x00{user_id}"


def read_token(
    found: check.Violations,
    tokens: PageTokens,
    scope: str,
    token: str,
    *,
    key_type: type,
    field: str = "page_token",
) -> Cursor | None:
    if not token:
        return None
    try:
        cursor = tokens.read(scope, token)
    except PageTokenError as error:
        found.add(field, str(error))
        return None
    if not isinstance(cursor.key, key_type) or isinstance(cursor.key, bool):
        found.add(field, "is not a page token of this request; start again without one")
        return None
    return cursor


def page_of(
    rows: Sequence[T], limit: int, cursor_of: Callable[[T], Cursor], tokens: PageTokens, scope: str
) -> Page[T]:
    """`rows` were fetched with limit + 1: the extra row only says another page exists."""
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return Page(items, "")
    return Page(items, tokens.issue(scope, cursor_of(items[-1])))


async def list_users(
    new_uow: UnitOfWorkFactory, tokens: PageTokens, request: ListUsersInput
) -> Page[User]:
    found = check.Violations()
    cap = FULL_PAGE_MAX if request.view is View.FULL else PAGE_MAX
    limit = check_page_size(found, "page_size", request.page_size, cap)
    rest = check.Violations()
    user_filter = check_user_filter(
        rest, request.email_domain, request.address_email_contains, request.email
    )
    ordering = parse_order_by(rest, "order_by", request.order_by)
    scope = users_scope(user_filter, ordering)
    after = None
    if not rest.items:  # a token is only checked against filters and an order that parse
        key_type = KEY_TYPES[ordering.field]
        after = read_token(found, tokens, scope, request.page_token, key_type=key_type)
    found.extend(rest)
    found.raise_if_any()
    query = UsersPageQuery(user_filter, ordering, after, limit + 1, request.view)
    rows = await new_uow.read_users_page(query)
    return page_of(rows, limit, lambda user: Cursor(ordering.key_of(user), user.id), tokens, scope)
