"""Health reporting: "" is liveness, each users.v1 service is readiness (API.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LIVENESS = ""
SERVICE_NAME: str = health.SERVICE_NAME


class _AsyncHealthServicer(Protocol):
    # grpc_health ships its asyncio servicer untyped (the stubs predate it).
    async def set(
        self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus
    ) -> None: ...
    async def enter_graceful_shutdown(self) -> None: ...


class Health:
    def __init__(self, server: grpc.aio.Server, readiness: Sequence[str]) -> None:
        servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        self._servicer = cast(_AsyncHealthServicer, servicer)
        self._readiness = tuple(readiness)

    async def serving(self) -> None:
        for name in (LIVENESS, *self._readiness):
            await self._servicer.set(name, SERVING)

    async def set_ready(self, ready: bool) -> None:
        """Readiness only: liveness stays SERVING while the process can answer."""
        for name in self._readiness:
            await self._servicer.set(name, SERVING if ready else NOT_SERVING)

    async def draining(self) -> None:
        """Every service NOT_SERVING, liveness included; later sets are ignored."""
        await self._servicer.enter_graceful_shutdown()
