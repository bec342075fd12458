"""The schema, as SQLAlchemy Core tables; migrations/ creates the same."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    text,
)

from service.db.types import Id, UtcDateTime, exact_text, sortable_text, text_column

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # ListUsers orders by name and email: bytewise collations, the same order everywhere.
    Column("name", sortable_text(50), nullable=False),
    # Stored lower-cased, so this unique index is the case-insensitive one API.md asks for.
    Column("email", sortable_text(120), nullable=False),
    # The part after "@", kept so the email_domain filter can use an index.
    Column("email_domain", exact_text(120), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    Column("version", Integer, nullable=False),
    UniqueConstraint("email", name="uq_users_email"),
    Index("ix_users_email_domain", "email_domain", "id"),
    # One (sort key, id) index per ListUsers order_by, so every page is an index seek.
    Index("ix_users_create_time_id", "create_time", "id"),
    Index("ix_users_name_id", "name", "id"),
    Index("ix_users_email_id", "email", "id"),
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
    # address_email_contains searches it; unique per user means the same code points.
    Column("email", exact_text(120), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    Column("version", Integer, nullable=False),
    UniqueConstraint("user_id", "email", name="uq_addresses_user_id_email"),
    Index("ix_addresses_user_id_id", "user_id", "id"),
    # PostgreSQL only, and only where pg_trgm can be created (migration 0002):
    # ix_addresses_email_trgm, GIN (email gin_trgm_ops), for address_email_contains.
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

# Secrets the server generates once and every process serving the database shares
# (the page-token key when PAGE_TOKEN_KEY is unset).
server_keys = Table(
    "server_keys",
    metadata,
    Column("name", String(64), nullable=False),
    Column("secret", String(128), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("name", name="pk_server_keys"),
)

# ImportUsers staging (API.md: rows are checked and written as they arrive, then become
# visible all at once). Rows wait here, invisible to every reader, until the stream ends.
# heartbeat_time moves with every written batch, so an import whose process died is
# recognisable by age and purged (service/domain/housekeeping.py).
imports = Table(
    "imports",
    metadata,
    Column("import_id", String(32), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("heartbeat_time", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("import_id", name="pk_imports"),
    Index("ix_imports_heartbeat_time", "heartbeat_time"),
)

import_rows = Table(
    "import_rows",
    metadata,
    Column("import_id", String(32), nullable=False),
    Column("stream_index", BigInteger, nullable=False),  # the row's 0-based position in the call
    Column("name", String(50), nullable=False),
    # The type of users.email: joined with it, and MariaDB refuses mixed collations.
    Column("email", sortable_text(120), nullable=False),
    Column("email_domain", text_column(120), nullable=False),
    Column("request_id", text_column(64), nullable=True),
    Column("fingerprint", String(64), nullable=True),
    PrimaryKeyConstraint("import_id", "stream_index", name="pk_import_rows"),
    # A repeat inside one import can never be staged twice, whatever the checks missed.
    UniqueConstraint("import_id", "email", name="uq_import_rows_import_id_email"),
    # NULLs are distinct on all three backends: rows without a request_id never clash.
    UniqueConstraint("import_id", "request_id", name="uq_import_rows_import_id_request_id"),
)

import_addresses = Table(
    "import_addresses",
    metadata,
    Column("import_id", String(32), nullable=False),
    Column("stream_index", BigInteger, nullable=False),
    Column("address_index", Integer, nullable=False),
    Column("email", text_column(120), nullable=False),
    PrimaryKeyConstraint("import_id", "stream_index", "address_index", name="pk_import_addresses"),
)

# The change log behind WatchUsers (migration 0005). Triggers on users append one row per
# written user in the writing transaction; the sequencer (db/change_log.py) gives each
# committed row its position, in the order it finds them committed. See the README,
# "How the change stream works".
user_changes = Table(
    "user_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("position", BigInteger, nullable=True),
    Column("change_type", SmallInteger, nullable=False),
    Column("user_id", Id, nullable=False),
    Column("name", text_column(50), nullable=False),
    Column("email", text_column(120), nullable=False),
    Column("email_domain", exact_text(120), nullable=False),
    Column("create_time", UtcDateTime(), nullable=False),
    Column("update_time", UtcDateTime(), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sequenced_time", UtcDateTime(), nullable=True),
    UniqueConstraint("position", name="uq_user_changes_position"),
    # The sequencer's probe for changes without a position: a seek, however long the log
    # (migration 0006; SQLite seeks through uq_user_changes_position).
    Index("ix_user_changes_unnumbered", "id", postgresql_where=text("position IS NULL")).ddl_if(
        dialect="postgresql"
    ),
    Index("ix_user_changes_position_id", "position", "id").ddl_if(dialect=("mysql", "mariadb")),  # type: ignore[arg-type]  # documented; stub says str
    sqlite_autoincrement=True,
)

# One row (id 1): the last position handed out, and how far old changes were purged.
# Its row lock is the sequencer's: rounds from every process take it in turn.
change_log_state = Table(
    "change_log_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_position", BigInteger, nullable=False),
    Column("purged_through", BigInteger, nullable=False),
)
