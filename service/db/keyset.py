"""Keyset SQL for ListUsers: filters, order, and "the rows after this cursor".

API.md: page 10,000 costs what page 1 costs, under every order. So a page never uses
OFFSET: it starts after the previous page's last (sort key, id), seeking an index on
(sort key, id) that migration 0002 creates for each order_by.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, or_, tuple_

from service.db.tables import addresses, users
from service.domain.queries import Cursor, Ordering, SortField, UserFilter, UsersPageQuery

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
    select_users: Select[Any], query: UsersPageQuery, *, row_values: bool
) -> Select[Any]:
    """`select_users` with the page's filters, position, order and limit applied.

    row_values: compare (key, id) as a row, for backends whose planner turns that into
    one index seek even when many rows share the key (PostgreSQL).
    """
    bound = None
    if query.after is not None and query.ordering.field is SortField.ID:
        cursor_id, descending = query.after.id, query.ordering.descending
        bound = functools.partial(_beyond, cursor_id, descending=descending)
    statement = select_users.where(*filter_clauses(query.filter, user_id_bound=bound))
    if query.after is not None:
        statement = statement.where(after(query.ordering, query.after, row_values=row_values))
    return statement.order_by(*order_clauses(query.ordering)).limit(query.limit)


def _beyond(cursor_id: int, column: ColumnElement[int], *, descending: bool) -> ColumnElement[bool]:
    return column < cursor_id if descending else column > cursor_id


def filter_clauses(
    user_filter: UserFilter,
    *,
    user_id_bound: Callable[[ColumnElement[int]], ColumnElement[bool]] | None = None,
) -> list[ColumnElement[bool]]:
    """API.md: filters combine with AND; an empty filter is no filter.

    user_id_bound: the page's id bound when paging by id, restated on the addresses
    the EXISTS looks at. PostgreSQL derives no inequality across the join, and would
    otherwise merge-join from the first address: page 10,000 read 800,000 addresses.
    """
    clauses: list[ColumnElement[bool]] = []
    if user_filter.email:
        clauses.append(users.c.email == user_filter.email)
    if user_filter.email_domain:
        clauses.append(users.c.email_domain == user_filter.email_domain)
    if user_filter.address_email_contains:
        # EXISTS, not a JOIN: a user with several matching addresses is listed once.
        pattern = contains_pattern(user_filter.address_email_contains)
        owned = (
            exists()
            .where(addresses.c.user_id == users.c.id)
            .where(addresses.c.email.like(pattern, escape=LIKE_ESCAPE))
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


def after(ordering: Ordering, cursor: Cursor, *, row_values: bool) -> ColumnElement[bool]:
    """Rows strictly after the cursor in the page order.

    Compared with the same column (and so the same collation) that ORDER BY uses:
    the two must agree for no row to be skipped or repeated.
    """
    if ordering.field is SortField.ID:
        return users.c.id < cursor.id if ordering.descending else users.c.id > cursor.id
    column = SORT_COLUMNS[ordering.field]
    if row_values:
        # A plain tuple on the right binds each value with its column's type.
        pair, bound = tuple_(column, users.c.id), (cursor.key, cursor.id)
        return pair < bound if ordering.descending else pair > bound
    # Without row values: key > k OR (key = k AND id > i), which MariaDB's range optimizer
    # turns into an exact (key, id) range. The leading key >= k repeats what the OR
    # implies, so that any planner (SQLite's) can at least start the index scan at k.
    if ordering.descending:
        return and_(
            column <= cursor.key,
            or_(column < cursor.key, and_(column == cursor.key, users.c.id < cursor.id)),
        )
    return and_(
        column >= cursor.key,
        or_(column > cursor.key, and_(column == cursor.key, users.c.id > cursor.id)),
    )
