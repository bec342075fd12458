"""Filters compare without padding: NO PAD collations for the filtered columns on MariaDB.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op
from sqlalchemy.dialects import mysql

from service.db.types import MARIADB_BYTEWISE, MYSQL_BYTEWISE

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, column, length) that ListUsers and StreamUsers filters compare with client text:
# email_domain by equality, addresses.email by LIKE and by uq_addresses_user_id_email.
# users.email is a sort column and NO PAD since 0002; the import staging columns are only
# copied from, never compared with a filter, and keep their types.
_FILTERED = (("users", "email_domain", 120), ("addresses", "email", 120))


def upgrade() -> None:
    _set_filter_collations(nopad=True)


def downgrade() -> None:
    _set_filter_collations(nopad=False)


def _set_filter_collations(*, nopad: bool) -> None:
    """API.md: filters fold case and nothing else. MariaDB's (and MySQL's) utf8mb4_bin is
    PAD SPACE, so `email_domain: "x.com "` matched users of x.com; the nopad collation
    keeps utf8mb4_bin's byte order and compares trailing spaces. SQLite's BINARY and
    PostgreSQL's deterministic collations never pad: nothing to do there. Downgrading
    restores 0001's utf8mb4_bin."""
    dialect = op.get_bind().dialect
    if dialect.name not in ("mysql", "mariadb"):
        return
    is_mariadb = bool(getattr(dialect, "is_mariadb", False))
    after = MARIADB_BYTEWISE if is_mariadb else MYSQL_BYTEWISE
    for table, column, length in _FILTERED:
        op.alter_column(
            table,
            column,
            type_=mysql.VARCHAR(
                length, charset="utf8mb4", collation=after if nopad else "utf8mb4_bin"
            ),
            existing_nullable=False,
            nullable=False,
        )
