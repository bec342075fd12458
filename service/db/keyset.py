"""Keyset SQL for ListUsers: filters, order, and "the rows after this cursor".

API.md: page 10,000 costs what page 1 costs, under every order. So a page never uses
OFFSET: it starts after the previous page's last (sort key, id), seeking an index on
(sort key, id) that migration 0002 creates for each order_by.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    exists,
    or_,
    select,
    tuple_,
)

from service.db.tables import addresses, users
from service.domain.queries import Ordering, SortField, UserFilter, UsersPageQuery

# Escapes LIKE wildcards in address_email_contains; "\" would be an escape by default on
# MariaDB and PostgreSQL, so an explicit ESCAPE character makes it plain on all three.
LIKE_ESCAPE = "/"

SORT_COLUMNS = {
    SortField.ID: users.c.id,
    SortField.CREATE_TIME: users.c.create_time,
    SortField.NAME: users.c.name,
    SortField.EMAIL: users.c.email,
}


def users_page(
    columns: tuple[ColumnElement[Any], ...], query: UsersPageQuery, *, row_values: bool
) -> tuple[Select[Any], dict[str, Any]]:
    """The page's statement over `columns` and its parameters: its filters, position,
    order and limit.

    The statement is built once per shape (which filters, which order, after a cursor or
    not) and kept, so SQLAlchemy finds its compiled form by a memoized key instead of
    building and hashing a new select on every call; the page's values are parameters.

    row_values: compare (key, id) as a row, for backends whose planner turns that into
    one index seek even when many rows share the key (PostgreSQL).
    """
    values: dict[str, Any] = filter_values(query.filter)
    statement = _page_statement(
        columns,
        frozenset(values),
        query.ordering,
        after=query.after is not None,
        row_values=row_values,
    )
    values["page_limit"] = query.limit
    if query.after is not None:
        values["cursor_id"] = query.after.id
        if query.ordering.field is not SortField.ID:
            values["cursor_key"] = query.after.key
    return statement, values


# Each filter's parameter, and the type of the column it is compared with.
_FILTER_TYPES = {
    "email": users.c.email.type,
    "email_domain": users.c.email_domain.type,
    "address_pattern": addresses.c.email.type,
}


def filter_values(user_filter: UserFilter) -> dict[str, str]:
    """The filters set, by parameter name (API.md: an empty filter is no filter)."""
    values = {"email": user_filter.email, "email_domain": user_filter.email_domain}
    if user_filter.address_email_contains:
        values["address_pattern"] = contains_pattern(user_filter.address_email_contains)
    return {name: value for name, value in values.items() if value}


@functools.lru_cache(maxsize=256)
def _page_statement(
    columns: tuple[ColumnElement[Any], ...],
    filters: frozenset[str],
    ordering: Ordering,
    *,
    after: bool,
    row_values: bool,
) -> Select[Any]:
    cursor_id = bindparam("cursor_id", type_=users.c.id.type)
    bound = None
    if after and ordering.field is SortField.ID:
        bound = functools.partial(_beyond, cursor_id, descending=ordering.descending)
    statement = select(*columns).where(*filter_clauses(filters, user_id_bound=bound))
    if after:
        key = bindparam("cursor_key", type_=SORT_COLUMNS[ordering.field].type)
        statement = statement.where(_after(ordering, key, cursor_id, row_values=row_values))
    limit = bindparam("page_limit", type_=Integer)
    return statement.order_by(*order_clauses(ordering)).limit(limit)


def _beyond(
    cursor_id: ColumnElement[Any], column: ColumnElement[int], *, descending: bool
) -> ColumnElement[bool]:
    return column < cursor_id if descending else column > cursor_id


def filter_clauses(
    filters: frozenset[str],
    *,
    user_id_bound: Callable[[ColumnElement[int]], ColumnElement[bool]] | None = None,
) -> list[ColumnElement[bool]]:
    """The clauses of the filters named (filter_values' names), each comparing with a
    parameter of that name; API.md: filters combine with AND.

    user_id_bound: the page's id bound when paging by id, restated on the addresses
    the EXISTS looks at. PostgreSQL derives no inequality across the join, and would
    otherwise merge-join from the first address: page 10,000 read 800,000 addresses.
    """
    given = {name: bindparam(name, type_=_FILTER_TYPES[name]) for name in filters}
    clauses: list[ColumnElement[bool]] = []
    if "email" in given:
        clauses.append(users.c.email == given["email"])
    if "email_domain" in given:
        clauses.append(users.c.email_domain == given["email_domain"])
    if "address_pattern" in given:
        # EXISTS, not a JOIN: a user with several matching addresses is listed once.
        owned = (
            exists()
            .where(addresses.c.user_id == users.c.id)
            .where(addresses.c.email.like(given["address_pattern"], escape=LIKE_ESCAPE))
        )
        if user_id_bound is not None:
            owned = owned.where(user_id_bound(addresses.c.user_id))
        clauses.append(owned)
    return clauses


def contains_pattern(text: str) -> str:
    """A LIKE pattern matching `text` literally anywhere ("%", "_" and "\\" are plain)."""
    escaped = (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return f"%{escaped}%"


def order_clauses(ordering: Ordering) -> list[ColumnElement[Any]]:
    columns = [SORT_COLUMNS[ordering.field]]
    if ordering.field is not SortField.ID:
        columns.append(users.c.id)  # API.md: ties are broken by id, in the same direction
    return [column.desc() if ordering.descending else column.asc() for column in columns]


def _after(
    ordering: Ordering,
    key: ColumnElement[Any],
    cursor_id: ColumnElement[Any],
    *,
    row_values: bool,
) -> ColumnElement[bool]:
    """Rows strictly after the cursor (key, cursor_id) in the page order.

    Compared with the same column (and so the same collation) that ORDER BY uses:
    the two must agree for no row to be skipped or repeated.
    """
    if ordering.field is SortField.ID:
        return users.c.id < cursor_id if ordering.descending else users.c.id > cursor_id
    column = SORT_COLUMNS[ordering.field]
    if row_values:
        pair, bound = tuple_(column, users.c.id), tuple_(key, cursor_id)
        return pair < bound if ordering.descending else pair > bound
    # Without row values: key > k OR (key = k AND id > i), which MariaDB's range optimizer
    # turns into an exact (key, id) range. The leading key >= k repeats what the OR
    # implies, so that any planner (SQLite's) can at least start the index scan at k.
    if ordering.descending:
        return and_(
            column <= key,
            or_(column < key, and_(column == key, users.c.id < cursor_id)),
        )
    return and_(
        column >= key,
        or_(column > key, and_(column == key, users.c.id > cursor_id)),
    )
