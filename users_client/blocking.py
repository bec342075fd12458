"""BlockingUsersClient: UsersClient's calls for code without an event loop.

The asyncio client runs on a private event loop in a daemon thread; each method waits
for its coroutine there, and iterators pull one item at a time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import grpc

from users_client.client import UsersClient

P = ParamSpec("P")
T = TypeVar("T")


def _waiting(
    method: Callable[Concatenate[UsersClient, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[BlockingUsersClient, P], T]:
    def call(self: BlockingUsersClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._wait(method(self._client, *args, **kwargs))

    call.__doc__ = method.__doc__
    return call


def _iterating(
    method: Callable[Concatenate[UsersClient, P], AsyncIterator[T]],
) -> Callable[Concatenate[BlockingUsersClient, P], Iterator[T]]:
    def call(self: BlockingUsersClient, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        iterator = method(self._client, *args, **kwargs)
        try:
            while True:
                try:
                    yield self._wait(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                self._wait(close())  # an async generator's aclose is a coroutine

    call.__doc__ = method.__doc__
    return call


async def _next(iterator: AsyncIterator[T]) -> T:
    return await anext(iterator)


class BlockingUsersClient:
    """`with BlockingUsersClient("host:port", token=...) as users: users.get_user(1)`"""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        resume_seconds: float = 30.0,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def opened() -> UsersClient:
            # grpc.aio binds a channel to the loop it was made on.
            return UsersClient(target, token=token, tls=tls, resume_seconds=resume_seconds)

        self._client = self._wait(opened())

    def _wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._wait(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    get_user = _waiting(UsersClient.get_user)
    batch_get_users = _waiting(UsersClient.batch_get_users)
    create_user = _waiting(UsersClient.create_user)
    batch_create_users = _waiting(UsersClient.batch_create_users)
    update_user = _waiting(UsersClient.update_user)
    delete_user = _waiting(UsersClient.delete_user)
    import_users = _waiting(UsersClient.import_users)
    list_users = _iterating(UsersClient.list_users)
    stream_users = _iterating(UsersClient.stream_users)
    create_address = _waiting(UsersClient.create_address)
    get_address = _waiting(UsersClient.get_address)
    list_addresses = _iterating(UsersClient.list_addresses)
    update_address = _waiting(UsersClient.update_address)
    delete_address = _waiting(UsersClient.delete_address)
