"""raw.fetch_alone's connect: a database that refuses or is still starting is
UNAVAILABLE (DatabaseUnavailableError), never an internal error with a traceback."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest

from service.db.engine import create_engine
from service.db.users_store import read_user_alone
from service.domain.errors import DatabaseUnavailableError
from service.domain.models import View


def _error_response(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


async def _starting_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """What PostgreSQL answers a connection while it is still starting (SQLSTATE 57P03)."""
    try:
        while True:
            length = struct.unpack("!i", await reader.readexactly(4))[0]
            payload = await reader.readexactly(length - 4)
            if payload[:4] in (struct.pack("!i", 80877103), struct.pack("!i", 80877104)):
                writer.write(b"N")  # an SSL or GSS request: not here
                await writer.drain()
                continue
            writer.write(_error_response("57P03", "the database system is starting up"))
            await writer.drain()
            return
    except asyncio.IncompleteReadError:
        return
    finally:
        writer.close()


@pytest.fixture
async def starting_database() -> AsyncIterator[int]:
    server = await asyncio.start_server(_starting_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port


async def read_is_unavailable(port: int) -> None:
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/users")
    try:
        with pytest.raises(DatabaseUnavailableError):
            await read_user_alone(engine, 1, View.BASIC)
    finally:
        await engine.dispose()


async def test_a_database_still_starting_up_is_unavailable(starting_database: int) -> None:
    await read_is_unavailable(starting_database)


async def test_a_refused_connection_is_unavailable() -> None:
    server = await asyncio.start_server(_starting_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens on the port any more
    await read_is_unavailable(port)
