"""StreamUsers' keyset reads: one prebuilt statement a stream, rows as plain tuples.

A stream may read a million rows, so the per-row cost is what matters here: the
statement is built once per set of filters (SQLAlchemy's compiled cache and asyncpg's prepared
statements do the rest), rows stay rows, and no column has a result processor.
"""

from __future__ import annotations

import functools
import typing
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Row,
    Select,
    Table,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db import keyset
from service.db.raw import fetch_rows
from service.db.tables import addresses, users
from service.domain.queries import UserFilter
from service.domain.rows import AddressRow, RowBatch, UserRow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros_of(moment: datetime) -> int:
    """Whole microseconds since the epoch; exact, unlike float timestamp()."""
    return (moment - _EPOCH) // _MICROSECOND


def _epoch_micros(column: ColumnElement[datetime]) -> ColumnElement[int]:
    # date_part is a double: a third of the server's CPU of EXTRACT's exact numeric
    # (PostgreSQL 14+), and still exact to the microsecond once rounded, for dates this
    # side of year 2200 (seconds since 1970 with six decimals fit its 53 bits).
    return cast(
        func.date_part(literal_column("'epoch'"), column) * literal_column("1000000"), BigInteger
    )


def _times(table: Table, postgres: bool) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    if postgres:
        return _epoch_micros(table.c.create_time), _epoch_micros(table.c.update_time)
    return table.c.create_time, table.c.update_time


@functools.lru_cache(maxsize=32)
def _users_statement(postgres: bool, filters: frozenset[str]) -> Select[Any]:
    """Built once per set of filters and reused by every batch of every stream with it;
    the filters' values, the position and the limit are parameters."""
    after_id = bindparam("after_id", type_=BigInteger)
    return (
        select(users.c.id, users.c.name, users.c.email, *_times(users, postgres), users.c.version)
        .where(*keyset.filter_clauses(filters, user_id_bound=lambda column: column > after_id))
        .where(users.c.id > after_id)
        .order_by(users.c.id)
        .limit(bindparam("batch_limit", type_=BigInteger))
    )


_ADDRESS_COLUMNS = (addresses.c.id, addresses.c.user_id, addresses.c.email)
# One statement text whatever the batch's size (an array, not an IN list), so asyncpg
# prepares it once per connection.
_POSTGRES_ADDRESSES = (
    select(*_ADDRESS_COLUMNS, *_times(addresses, True), addresses.c.version)
    .where(addresses.c.user_id == any_(bindparam("user_ids", type_=ARRAY(BigInteger))))
    .order_by(addresses.c.user_id, addresses.c.id)
)


async def read_batch(
    connection: AsyncConnection,
    user_filter: UserFilter,
    after_id: int,
    limit: int,
    *,
    with_addresses: bool,
) -> RowBatch:
    """Up to `limit` matching users after `after_id`; with their addresses if asked.

    On PostgreSQL the server turns timestamps into epoch microseconds, so Python builds
    no datetime for them; elsewhere they are converted here.
    """
    postgres = connection.dialect.name == "postgresql"
    filters = keyset.filter_values(user_filter)
    found = await fetch_rows(
        connection,
        _users_statement(postgres, frozenset(filters)),
        {**filters, "after_id": after_id, "batch_limit": limit},
    )
    # asyncpg's Records index and unpack as the tuples of service.domain.rows.
    rows = typing.cast(Sequence[UserRow], found if postgres else [_in_micros(r) for r in found])
    if not with_addresses or not rows:
        return RowBatch(rows)
    ids = [row[0] for row in rows]
    if postgres:
        stored = await fetch_rows(connection, _POSTGRES_ADDRESSES, {"user_ids": ids})
        return RowBatch(rows, _grouped(typing.cast(Sequence[AddressRow], stored)))
    owned = await connection.execute(
        select(*_ADDRESS_COLUMNS, addresses.c.create_time, addresses.c.update_time)
        .add_columns(addresses.c.version)
        .where(addresses.c.user_id.in_(ids))
        .order_by(addresses.c.user_id, addresses.c.id)
    )
    return RowBatch(rows, _grouped([_in_micros(r) for r in owned]))


def _in_micros(row: Row[Any, Any, Any, Any, Any, Any]) -> tuple[Any, Any, Any, int, int, Any]:
    return (row[0], row[1], row[2], micros_of(row[3]), micros_of(row[4]), row[5])


def _grouped(rows: Sequence[AddressRow]) -> dict[int, list[AddressRow]]:
    owned: dict[int, list[AddressRow]] = defaultdict(list)
    for row in rows:
        owned[row[1]].append(row)
    return owned
