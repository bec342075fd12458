"""The change log behind WatchUsers: user_changes, change_log_state, and the triggers
that record every write to users.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.db.types import Id, UtcDateTime, exact_text, text_column

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The columns a change copies from its users row (the row after the write; before it,
# for a delete). change_type: 1 created, 2 updated, 3 deleted (UserChange.Type).
_COPIED = "user_id, name, email, email_domain, create_time, update_time, version"
_FROM_ROW = (
    "{row}.id, {row}.name, {row}.email, {row}.email_domain, {row}.create_time, "
    "{row}.update_time, {row}.version"
)
_OPERATIONS = (("INSERT", 1, "NEW"), ("UPDATE", 2, "NEW"), ("DELETE", 3, "OLD"))


def upgrade() -> None:
    op.create_table(
        "user_changes",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        # NULL until the sequencer (db/change_log.py) places the committed change.
        sa.Column("position", sa.BigInteger, nullable=True),
        sa.Column("change_type", sa.SmallInteger, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("name", text_column(50), nullable=False),
        sa.Column("email", text_column(120), nullable=False),
        sa.Column("email_domain", exact_text(120), nullable=False),
        sa.Column("create_time", UtcDateTime(), nullable=False),
        sa.Column("update_time", UtcDateTime(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("sequenced_time", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("position", name="uq_user_changes_position"),
        sqlite_autoincrement=True,
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "change_log_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_position", sa.BigInteger, nullable=False),
        sa.Column("purged_through", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO change_log_state (id, last_position, purged_through) VALUES (1, 0, 0)")
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _postgresql_triggers()
    elif dialect in ("mysql", "mariadb"):
        _row_triggers(begin="", end="")
    else:
        _row_triggers(begin="BEGIN ", end="; END")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for operation, _, _ in _OPERATIONS:
            op.execute(f"DROP TRIGGER users_{operation.lower()}_changes ON users")
            op.execute(f"DROP FUNCTION users_record_{operation.lower()}()")
    else:
        for operation, _, _ in _OPERATIONS:
            op.execute(f"DROP TRIGGER users_{operation.lower()}_changes")
    op.drop_table("change_log_state")
    op.drop_table("user_changes")


def _postgresql_triggers() -> None:
    """One statement-level trigger per operation, over its transition table: a bulk
    insert of a million users appends its changes in one INSERT ... SELECT. pg_notify
    wakes the sequencer at commit (and never, if the transaction rolls back)."""
    for operation, change_type, row in _OPERATIONS:
        table = "new_rows" if row == "NEW" else "old_rows"
        name = operation.lower()
        op.execute(
            f"""
            CREATE FUNCTION users_record_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO user_changes (change_type, {_COPIED})
                SELECT {change_type}, {_FROM_ROW.format(row="r")}
                FROM {table} AS r ORDER BY r.id;
                IF FOUND THEN
                    PERFORM pg_notify('users_changes', '');
                END IF;
                RETURN NULL;
            END
            $$
            """
        )
        op.execute(
            f"CREATE TRIGGER users_{name}_changes AFTER {operation} ON users "
            f"REFERENCING {row} TABLE AS {table} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION users_record_{name}()"
        )


def _row_triggers(*, begin: str, end: str) -> None:
    """MariaDB and SQLite: a row trigger per operation (neither has transition tables)."""
    for operation, change_type, row in _OPERATIONS:
        op.execute(
            f"CREATE TRIGGER users_{operation.lower()}_changes AFTER {operation} ON users "
            f"FOR EACH ROW {begin}INSERT INTO user_changes (change_type, {_COPIED}) "
            f"VALUES ({change_type}, {_FROM_ROW.format(row=row)}){end}"
        )
