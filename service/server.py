"""Build, start, drain and stop the gRPC server; health and reflection always on."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy.ext.asyncio import AsyncEngine
from users.v1 import (
    address_service_pb2,
    address_service_pb2_grpc,
    user_service_pb2,
    user_service_pb2_grpc,
)

from service.api.addresses import AddressService
from service.api.users import UserService
from service.config import Settings
from service.db.engine import create_engine
from service.db.migrate import upgrade
from service.db.uow import SqlUnitOfWork
from service.health import SERVICE_NAME as HEALTH_SERVICE
from service.health import Health

log = logging.getLogger("users.server")

USER_SERVICE = user_service_pb2.DESCRIPTOR.services_by_name["UserService"].full_name
ADDRESS_SERVICE = address_service_pb2.DESCRIPTOR.services_by_name["AddressService"].full_name
# API.md: "" is liveness; each users.v1 service is readiness.
READINESS = (USER_SERVICE, ADDRESS_SERVICE)


class StartupError(Exception):
    """The server cannot start; the message is one line for the operator."""


@dataclass
class RunningServer:
    server: grpc.aio.Server
    engine: AsyncEngine
    health: Health
    port: int

    async def stop(self, grace: float | None) -> None:
        """Readiness NOT_SERVING first, then refuse new calls and drain, then close the pool."""
        await self.health.draining()
        await self.server.stop(grace)
        await self.engine.dispose()


async def start(settings: Settings, *, migrate: bool = True) -> RunningServer:
    engine = create_engine(settings.database_url)
    try:
        if migrate:
            await upgrade(engine)
        server = grpc.aio.server()
        user_service_pb2_grpc.add_UserServiceServicer_to_server(
            UserService(lambda: SqlUnitOfWork(engine)), server
        )
        address_service_pb2_grpc.add_AddressServiceServicer_to_server(
            AddressService(lambda: SqlUnitOfWork(engine)), server
        )
        health = Health(server, READINESS)
        reflection.enable_server_reflection(
            (*READINESS, HEALTH_SERVICE, reflection.SERVICE_NAME), server
        )
        address = f"{settings.host}:{settings.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as error:
            raise StartupError(f"cannot listen on {address}: is the port in use?") from error
        await server.start()
    except BaseException:
        await engine.dispose()
        raise
    await health.serving()
    return RunningServer(server=server, engine=engine, health=health, port=port)


async def serve(settings: Settings) -> None:
    """Runs until SIGTERM or SIGINT, then drains within the grace period."""
    running = await start(settings)
    log.info("users.v1 serving on %s:%d", settings.host, running.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping: draining calls for up to %.1f s", settings.grace_seconds)
    await running.stop(settings.grace_seconds)
    log.info("stopped")
