"""Listing: bytewise sort columns, keyset indexes, trigram search, server keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

from service.db.types import MARIADB_BYTEWISE, MYSQL_BYTEWISE, UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

log = logging.getLogger("users.migrations")

# (column, length) of the columns ListUsers orders by.
_SORTED = (("name", 50), ("email", 120))
_KEYSET_INDEXES = (
    ("ix_users_create_time_id", "users", ["create_time", "id"]),
    ("ix_users_name_id", "users", ["name", "id"]),
    ("ix_users_email_id", "users", ["email", "id"]),
    ("ix_addresses_user_id_id", "addresses", ["user_id", "id"]),
)
TRIGRAM_INDEX = "ix_addresses_email_trgm"


def upgrade() -> None:
    op.create_table(
        "server_keys",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_server_keys"),
        mysql_charset="utf8mb4",
    )
    _set_sort_collations(bytewise=True)
    for name, table, columns in _KEYSET_INDEXES:
        op.create_index(name, table, columns)
    if op.get_bind().dialect.name == "postgresql":
        _create_trigram_index()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {TRIGRAM_INDEX}")
    for name, table, _columns in reversed(_KEYSET_INDEXES):
        op.drop_index(name, table_name=table)
    _set_sort_collations(bytewise=False)
    op.drop_table("server_keys")


def _set_sort_collations(*, bytewise: bool) -> None:
    """Keyset paging needs ORDER BY and the cursor comparison to agree, and pages to
    agree across backends: sorted columns compare code point by code point (SQLite's
    BINARY already does). Downgrading restores each backend's default collation."""
    dialect = op.get_bind().dialect
    if dialect.name == "postgresql":
        for column, length in _SORTED:
            op.alter_column(
                "users",
                column,
                type_=postgresql.VARCHAR(length, collation="C" if bytewise else "default"),
                existing_nullable=False,
            )
    elif dialect.name in ("mysql", "mariadb"):
        is_mariadb = bool(getattr(dialect, "is_mariadb", False))
        for column, length in _SORTED:
            # 0001 made emails utf8mb4_bin and left names at the server's default.
            before = "utf8mb4_bin" if column == "email" else None
            after = MARIADB_BYTEWISE if is_mariadb else MYSQL_BYTEWISE
            op.alter_column(
                "users",
                column,
                type_=mysql.VARCHAR(
                    length, charset="utf8mb4", collation=after if bytewise else before
                ),
                existing_nullable=False,
                nullable=False,
            )


def _create_trigram_index() -> None:
    # API.md's address_email_contains is a substring search; a trigram index makes it an
    # index lookup. pg_trgm may be absent or not ours to create (CREATE on the database is
    # needed): then the filter still works, as a scan of each candidate's addresses.
    bind = op.get_bind()
    savepoint = bind.begin_nested()
    try:
        bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as error:
        savepoint.rollback()
        log.warning(
            "pg_trgm is unavailable (%s); address_email_contains will work without an index",
            str(error.orig).splitlines()[0] if error.orig is not None else error,
        )
        return
    savepoint.commit()
    # Emails are stored lower-cased, so the column itself is the case-insensitive value.
    op.create_index(
        TRIGRAM_INDEX,
        "addresses",
        ["email"],
        postgresql_using="gin",
        postgresql_ops={"email": "gin_trgm_ops"},
    )
