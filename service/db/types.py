"""Column types that behave the same on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Dialect, Integer, String
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.types import TypeDecorator, TypeEngine

# SQLite only auto-assigns ids to a column spelled exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


def text_column(length: int) -> TypeEngine[str]:
    # MariaDB's default collations are case- and accent-insensitive; emails are stored
    # lower-cased, so a binary collation makes "unique" mean equal. utf8mb4_bin still pads
    # spaces, harmless for values validation keeps spaces out of; columns a filter
    # compares with client text are exact_text instead.
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


MARIADB_BYTEWISE = "utf8mb4_nopad_bin"
MYSQL_BYTEWISE = "utf8mb4_0900_bin"  # MySQL 8 has no nopad_bin; its 0900 collations are NO PAD


def sortable_text(length: int) -> TypeEngine[str]:
    """Text that ListUsers orders by: compared code point by code point on every backend.

    PostgreSQL's "C" collation and MariaDB's utf8mb4_nopad_bin order as SQLite's BINARY
    does, so a page sorted by name is the same everywhere; nopad, because MariaDB's
    utf8mb4_bin would call "ana" and "ana " equal. Migration 0002 sets these.
    """
    return (
        String(length)
        .with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")
        .with_variant(
            mysql.VARCHAR(length, charset="utf8mb4", collation=MARIADB_BYTEWISE), "mysql", "mariadb"
        )
    )


def exact_text(length: int) -> TypeEngine[str]:
    """Text a list filter compares with client text: equal means the same code points.

    API.md: filters fold case (the stored values are lower-cased) and nothing else.
    MariaDB's utf8mb4_bin is PAD SPACE and would call "x.com" and "x.com " equal; its
    nopad twin orders the same and pads nothing. Migration 0004 sets these.
    """
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation=MARIADB_BYTEWISE), "mysql", "mariadb"
    )


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, with microseconds, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[datetime]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        # MariaDB and SQLite keep no zone: store naive UTC there.
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
