"""An index for the sequencer's probe of changes without a position.

The sequencer asks for the oldest changes that have no position yet (db/change_log.py,
`WHERE position IS NULL ORDER BY id`). Without this index PostgreSQL walks the primary
key from the log's first change, past every numbered one, and the whole log is
numbered but for the newest few: each round read the whole log, slower the longer the
retention. On PostgreSQL a partial index holds only the few changes waiting, in id
order; MariaDB has no partial indexes and indexes every row, its NULL positions together
in id order. SQLite seeks them through uq_user_changes_position already (its rows of one
key are in rowid order): nothing to add there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect in ("mysql", "mariadb"):
        op.create_index("ix_user_changes_position_id", "user_changes", ["position", "id"])
    elif dialect == "postgresql":
        # In id order, the probe's: PostgreSQL would not take that order from an index
        # on (position, id).
        op.create_index(
            "ix_user_changes_unnumbered",
            "user_changes",
            ["id"],
            postgresql_where=sa.text("position IS NULL"),
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect in ("mysql", "mariadb"):
        op.drop_index("ix_user_changes_position_id", table_name="user_changes")
    elif dialect == "postgresql":
        op.drop_index("ix_user_changes_unnumbered", table_name="user_changes")
