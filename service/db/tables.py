"""The schema, as SQLAlchemy Core tables; migrations/ creates the same."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
)

from service.db.types import Id, UtcDateTime, text_column

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(50), nullable=False),
    # Stored lower-cased, so this unique index is the case-insensitive one API.md asks for.
    Column("email", text_column(120), nullable=False),
    # The part after "@", kept so the email_domain filter can use an index.
    Column("email_domain", text_column(120), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    Column("version", Integer, nullable=False),
    UniqueConstraint("email", name="uq_users_email"),
    Index("ix_users_email_domain", "email_domain", "id"),
    # Ids are never reused, so a remembered request_id cannot point at a stranger.
    sqlite_autoincrement=True,
)

addresses = Table(
    "addresses",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "user_id",
        Id,
        ForeignKey("users.id", name="fk_addresses_user_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("email", text_column(120), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    Column("version", Integer, nullable=False),
    UniqueConstraint("user_id", "email", name="uq_addresses_user_id_email"),
    sqlite_autoincrement=True,
)

request_ids = Table(
    "request_ids",
    metadata,
    Column("method", String(64), nullable=False),
    Column("request_id", text_column(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("resource_id", Id, nullable=True),
    Column("create_time", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("method", "request_id", name="pk_request_ids"),
    Index("ix_request_ids_create_time", "create_time"),
)
