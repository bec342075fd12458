"""A real Node.js gRPC client (grpc-js + proto-loader) talks to the server from the .proto files."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import google.rpc.status_pb2 as status_pb2  # noqa: PLR0402 - namespace package

from service.server import RunningServer
from tests.rpc import fresh_email

HERE = Path(__file__).parent
# google/protobuf/*.proto ship inside protobufjs; google/rpc comes from site-packages.
GOOGLEAPIS = str(Path(status_pb2.__file__).parent.parent.parent)


async def test_node_client_round_trip(running: RunningServer) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed for the cross-language test"
    email = fresh_email()
    # Asynchronous: the server under test runs on this same event loop.
    process = await asyncio.create_subprocess_exec(
        node,
        str(HERE / "node_client.js"),
        f"127.0.0.1:{running.port}",
        email,
        GOOGLEAPIS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=HERE.parent.parent,
        env={**os.environ, "NODE_PATH": str(HERE.parent.parent / "node_modules")},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    steps = {line["step"]: line for line in map(json.loads, stdout.decode().splitlines())}
    created = steps["create"]["response"]
    assert created["email"] == email
    assert created["addresses"][0]["email"] == "node@example.org"
    assert int(created["id"]) > 0
    assert steps["get"]["response"] == created
    assert steps["invalid"]["code"] == 3  # INVALID_ARGUMENT
    assert "id" in steps["invalid"]["details"]
