"""Watch: WatchUsers that reconnects from its last resume token after UNAVAILABLE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
from users.v1 import user_service_pb2, user_service_pb2_grpc

from users_client.errors import UnavailableError, error_from
from users_client.resuming import Resumption

if TYPE_CHECKING:
    UserStub = user_service_pb2_grpc.UserServiceAsyncStub
else:
    UserStub = user_service_pb2_grpc.UserServiceStub

# The server names the watch's starting point in this response header (before any change).
RESUME_TOKEN_HEADER = "resume-token"  # noqa: S105 - a header name, not a secret


class Watch:
    """`async for change in watch`; `watch.resume_token` is the token of the last change
    received (or of the start, once the server has answered)."""

    def __init__(
        self,
        stub: UserStub,
        request: user_service_pb2.WatchUsersRequest,
        metadata: tuple[tuple[str, str], ...],
        resumption: Resumption,
    ) -> None:
        self._stub = stub
        self._request = request
        self._metadata = metadata
        self._resumption = resumption
        self.resume_token = request.resume_token
        self._on = asyncio.Event()

    async def on(self) -> None:
        """Returns once the server has answered: a change committed after this is seen
        (API.md: with no resume_token a watch starts from now). Iterate in another task."""
        await self._on.wait()

    def __aiter__(self) -> AsyncIterator[user_service_pb2.UserChange]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[user_service_pb2.UserChange]:
        while True:
            self._request.resume_token = self.resume_token
            call = self._stub.WatchUsers(self._request, metadata=self._metadata)
            try:
                for key, value in await call.initial_metadata() or ():
                    if key == RESUME_TOKEN_HEADER and not self.resume_token:
                        self.resume_token = str(value)
                self._on.set()
                async for change in call:
                    self.resume_token = change.resume_token
                    self._resumption.progressed()
                    yield change
                # A watch has no end: one that ends is a server going away.
                ended = UnavailableError(grpc.StatusCode.UNAVAILABLE, "the watch ended")
                await self._resumption.wait_or_raise(ended)
            except grpc.aio.AioRpcError as rpc_error:
                error = error_from(rpc_error)
                if not isinstance(error, UnavailableError):
                    raise error from rpc_error
                await self._resumption.wait_or_raise(error)
            finally:
                call.cancel()
