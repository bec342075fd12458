"""Every named constraint, broken on every backend, becomes the error db/errors.py's one
table names for it: the constraint is recognised by its name, not by the statement."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import ForeignKeyConstraint, PrimaryKeyConstraint, Table, UniqueConstraint, insert

from service import server
from service.db.errors import CONSTRAINT_ERRORS, KeyTakenError, Subject, execute
from service.db.tables import (
    addresses,
    import_addresses,
    import_rows,
    imports,
    metadata,
    request_ids,
    server_keys,
    user_changes,
    users,
)
from service.db.uow import SqlUnitOfWorkFactory
from service.domain.errors import (
    AddressExistsError,
    EmailTakenError,
    StagedRepeatError,
    UserNotFoundError,
)
from service.domain.models import utc_now

Row = Mapping[str, Any]


def user_row(email: str) -> Row:
    now = utc_now()
    return {
        "name": "Constraint",
        "email": email,
        "email_domain": email.split("@")[1],
        "create_time": now,
        "update_time": now,
        "version": 1,
    }


def staged_row(import_id: str, index: int, email: str, request_id: str | None) -> Row:
    return {
        "import_id": import_id,
        "stream_index": index,
        "name": "Staged",
        "email": email,
        "email_domain": email.split("@")[1],
        "request_id": request_id,
        "fingerprint": None,
    }


def change_row(user_id: int, email: str, position: int) -> Row:
    return {**user_row(email), "user_id": user_id, "change_type": 2, "position": position}


def test_every_named_constraint_has_a_row_in_the_table() -> None:
    named = {
        constraint.name
        for table in metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint | PrimaryKeyConstraint | ForeignKeyConstraint)
        and isinstance(constraint.name, str)
    }
    assert named == set(CONSTRAINT_ERRORS)


async def test_each_broken_constraint_becomes_its_error(running: server.RunningServer) -> None:
    tag = uuid.uuid4().hex[:12]
    now = utc_now()
    email = f"{tag}@constraints.test"
    # Far beyond any position the sequencer will reach while this server runs.
    far_position = 10**15 + int(tag[:8], 16)
    async with running.engine.begin() as connection:
        user_id = (await connection.execute(insert(users), [user_row(email)])).inserted_primary_key
        assert user_id is not None
        owner = int(user_id[0])
        await connection.execute(
            insert(addresses),
            [
                {
                    "user_id": owner,
                    "email": email,
                    "create_time": now,
                    "update_time": now,
                    "version": 1,
                }
            ],
        )
        await connection.execute(
            insert(request_ids),
            [{"method": "M", "request_id": tag, "fingerprint": "f", "create_time": now}],
        )
        await connection.execute(
            insert(server_keys), [{"name": tag, "secret": "s", "create_time": now}]
        )
        await connection.execute(
            insert(imports), [{"import_id": tag, "create_time": now, "heartbeat_time": now}]
        )
        await connection.execute(insert(import_rows), [staged_row(tag, 0, email, "r0")])
        await connection.execute(
            insert(import_addresses),
            [{"import_id": tag, "stream_index": 0, "address_index": 0, "email": email}],
        )
        await connection.execute(insert(user_changes), [change_row(owner, email, far_position)])

    other = f"other-{tag}@constraints.test"
    address = {"email": email, "create_time": now, "update_time": now, "version": 1}
    cases: dict[str, tuple[Table, Row, type[Exception]]] = {
        "uq_users_email": (users, user_row(email), EmailTakenError),
        "uq_addresses_user_id_email": (
            addresses,
            {**address, "user_id": owner},
            AddressExistsError,
        ),
        "fk_addresses_user_id": (addresses, {**address, "user_id": 10**12}, UserNotFoundError),
        "pk_request_ids": (
            request_ids,
            {"method": "M", "request_id": tag, "fingerprint": "g", "create_time": now},
            KeyTakenError,
        ),
        "pk_server_keys": (
            server_keys,
            {"name": tag, "secret": "t", "create_time": now},
            KeyTakenError,
        ),
        "pk_imports": (
            imports,
            {"import_id": tag, "create_time": now, "heartbeat_time": now},
            KeyTakenError,
        ),
        "pk_import_rows": (import_rows, staged_row(tag, 0, other, "r1"), StagedRepeatError),
        "uq_import_rows_import_id_email": (
            import_rows,
            staged_row(tag, 1, email, "r2"),
            StagedRepeatError,
        ),
        "uq_import_rows_import_id_request_id": (
            import_rows,
            staged_row(tag, 2, f"third-{tag}@constraints.test", "r0"),
            StagedRepeatError,
        ),
        "pk_import_addresses": (
            import_addresses,
            {"import_id": tag, "stream_index": 0, "address_index": 0, "email": other},
            StagedRepeatError,
        ),
        "uq_user_changes_position": (
            user_changes,
            change_row(owner, other, far_position),
            KeyTakenError,
        ),
    }
    assert set(cases) == set(CONSTRAINT_ERRORS)
    subject = Subject(email=email, user_id=owner)
    try:
        for name, (table, row, expected) in cases.items():
            async with running.engine.connect() as connection:
                with pytest.raises(expected) as raised:
                    await execute(connection, insert(table), [row], subject=subject)
                await connection.rollback()
            assert raised.value.__cause__ is not None, name
            if isinstance(raised.value, KeyTakenError):
                assert raised.value.constraint == name
    finally:
        # The import staged above is open: later tests of this database expect none.
        async with SqlUnitOfWorkFactory(running.engine).writing() as uow:
            await uow.imports.discard(tag)
            await uow.commit()
