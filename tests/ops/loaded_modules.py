"""What a server holds in memory: the modules loaded by a process of its own that
imports the command line, starts a server on SQLite, serves one CreateUser and stops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def modules_after_a_call(
    database_url: str, prefixes: tuple[str, ...], *, metrics_port: int | None = None
) -> list[str]:
    """The loaded modules whose names start with one of `prefixes`, sorted."""
    script = f"""
import asyncio, sys
import grpc
import service.cli
from service import server
from service.config import Settings
from users.v1 import user_service_pb2, user_service_pb2_grpc

async def main():
    running = await server.start(Settings(host="127.0.0.1", port=0,
        database_url={database_url!r}, metrics_port={metrics_port!r}))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{{running.port}}") as channel:
        stub = user_service_pb2_grpc.UserServiceStub(channel)
        await stub.CreateUser(user_service_pb2.CreateUserRequest(
            user={{"name": "A", "email": "a@example.com"}}))
    await running.stop(1)

asyncio.run(main())
for name in sorted(name for name in sys.modules if name.startswith({prefixes!r})):
    print(name)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()
