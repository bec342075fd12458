"""Users, their addresses, and remembered request ids.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.db.types import Id, UtcDateTime, text_column

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("email", text_column(120), nullable=False),
        sa.Column("email_domain", text_column(120), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sqlite_autoincrement=True,
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_users_email_domain", "users", ["email_domain", "id"])
    op.create_table(
        "addresses",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "user_id",
            Id,
            sa.ForeignKey("users.id", name="fk_addresses_user_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("email", text_column(120), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.UniqueConstraint("user_id", "email", name="uq_addresses_user_id_email"),
        sqlite_autoincrement=True,
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "request_ids",
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("request_id", text_column(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("resource_id", Id, nullable=True),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("method", "request_id", name="pk_request_ids"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_request_ids_create_time", "request_ids", ["create_time"])


def downgrade() -> None:
    op.drop_table("request_ids")
    op.drop_table("addresses")
    op.drop_table("users")
