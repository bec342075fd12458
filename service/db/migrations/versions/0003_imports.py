"""ImportUsers staging: imports, import_rows, import_addresses.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.db.types import UtcDateTime, sortable_text, text_column

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("import_id", sa.String(32), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("heartbeat_time", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("import_id", name="pk_imports"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_imports_heartbeat_time", "imports", ["heartbeat_time"])
    op.create_table(
        "import_rows",
        sa.Column("import_id", sa.String(32), nullable=False),
        sa.Column("stream_index", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        # users.email's type (0002): the two are joined, and MariaDB refuses mixed collations.
        sa.Column("email", sortable_text(120), nullable=False),
        sa.Column("email_domain", text_column(120), nullable=False),
        sa.Column("request_id", text_column(64), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("import_id", "stream_index", name="pk_import_rows"),
        sa.UniqueConstraint("import_id", "email", name="uq_import_rows_import_id_email"),
        sa.UniqueConstraint("import_id", "request_id", name="uq_import_rows_import_id_request_id"),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "import_addresses",
        sa.Column("import_id", sa.String(32), nullable=False),
        sa.Column("stream_index", sa.BigInteger, nullable=False),
        sa.Column("address_index", sa.Integer, nullable=False),
        sa.Column("email", text_column(120), nullable=False),
        sa.PrimaryKeyConstraint(
            "import_id", "stream_index", "address_index", name="pk_import_addresses"
        ),
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("import_addresses")
    op.drop_table("import_rows")
    op.drop_table("imports")
