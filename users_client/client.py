"""UsersClient: one object per target, the users.v1 calls with deadlines, retries,
paging, stream resumption and typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Protocol, Self, TypeAlias, TypeVar

import grpc
from google.protobuf import field_mask_pb2
from users.v1 import (
    address_service_pb2,
    address_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
    user_service_pb2_grpc,
)

from users_client.errors import UnavailableError, error_from
from users_client.resuming import Resumption
from users_client.rows import NewUser, create_request, import_messages
from users_client.service_config import channel_options
from users_client.watch import Watch

T = TypeVar("T")
Request = TypeVar("Request")
Response = TypeVar("Response")


class _PageRequest(Protocol):
    page_token: str


class _Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


PageRequest = TypeVar("PageRequest", bound=_PageRequest)
Page = TypeVar("Page", bound=_Page)
View: TypeAlias = resources_pb2.UserView.ValueType
UNSPECIFIED, BASIC, FULL = (
    resources_pb2.USER_VIEW_UNSPECIFIED,
    resources_pb2.USER_VIEW_BASIC,
    resources_pb2.USER_VIEW_FULL,
)

# Seconds a call may take, all its retries included; a stream, a watch and an import
# have none (they last as long as there is data).
DEFAULT_DEADLINES: Mapping[str, float] = {
    "GetUser": 5.0,
    "BatchGetUsers": 10.0,
    "CreateUser": 10.0,
    "BatchCreateUsers": 30.0,
    "UpdateUser": 10.0,
    "DeleteUser": 10.0,
    "ListUsers": 15.0,
    "CreateAddress": 10.0,
    "GetAddress": 5.0,
    "ListAddresses": 15.0,
    "UpdateAddress": 10.0,
    "DeleteAddress": 10.0,
}
# API.md: ImportUsers takes messages of up to 1000 rows.
IMPORT_CHUNK = 1000


def tls_from_ca_file(path: str) -> grpc.ChannelCredentials:
    with open(path, "rb") as pem:
        return grpc.ssl_channel_credentials(root_certificates=pem.read())


class UsersClient:
    """`async with UsersClient("host:port", token=..., tls=...) as users: ...`

    Unary calls are retried on UNAVAILABLE by the published service config (reads, and
    creates, which always carry a request_id). Paging, streams and watches go on by
    themselves after UNAVAILABLE for up to `resume_seconds` without progress.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        deadlines: Mapping[str, float] | None = None,
        resume_seconds: float = 30.0,
    ) -> None:
        options = channel_options()
        if tls is False:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials() if tls is True else tls
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        self.users = user_service_pb2_grpc.UserServiceStub(self._channel)
        self.addresses = address_service_pb2_grpc.AddressServiceStub(self._channel)
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._deadlines = {**DEFAULT_DEADLINES, **(deadlines or {})}
        self._resume_seconds = resume_seconds

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    # Users

    async def get_user(self, user_id: int, *, view: View = UNSPECIFIED) -> resources_pb2.User:
        request = user_service_pb2.GetUserRequest(id=user_id, view=view)
        return await self._unary("GetUser", self.users.GetUser, request)

    async def batch_get_users(
        self, ids: Iterable[int], *, view: View = UNSPECIFIED
    ) -> list[resources_pb2.User]:
        request = user_service_pb2.BatchGetUsersRequest(ids=list(ids), view=view)
        response = await self._unary("BatchGetUsers", self.users.BatchGetUsers, request)
        return list(response.users)

    async def create_user(
        self,
        name: str,
        email: str,
        *,
        addresses: Iterable[str] = (),
        request_id: str | None = None,
    ) -> resources_pb2.User:
        """`request_id` None: a new UUID, so that a retry of this call is not doubled."""
        request = create_request(NewUser(name, email, tuple(addresses), request_id))
        return await self._unary("CreateUser", self.users.CreateUser, request)

    async def batch_create_users(self, rows: Iterable[NewUser]) -> list[resources_pb2.User]:
        request = user_service_pb2.BatchCreateUsersRequest(
            requests=[create_request(row) for row in rows]
        )
        response = await self._unary("BatchCreateUsers", self.users.BatchCreateUsers, request)
        return list(response.users)

    async def update_user(
        self,
        user_id: int,
        *,
        name: str | None = None,
        email: str | None = None,
        etag: str = "",
    ) -> resources_pb2.User:
        """Changes the fields given; with `etag`, only if the user has not changed since."""
        changes = {"name": name, "email": email}
        paths = [path for path, value in changes.items() if value is not None]
        user = resources_pb2.User(id=user_id, name=name or "", email=email or "", etag=etag)
        request = user_service_pb2.UpdateUserRequest(
            user=user, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        return await self._unary("UpdateUser", self.users.UpdateUser, request)

    async def delete_user(self, user_id: int, *, etag: str = "", force: bool = False) -> None:
        request = user_service_pb2.DeleteUserRequest(id=user_id, etag=etag, force=force)
        await self._unary("DeleteUser", self.users.DeleteUser, request)

    async def list_users(
        self,
        *,
        email_domain: str = "",
        address_email_contains: str = "",
        email: str = "",
        order_by: str = "",
        view: View = UNSPECIFIED,
        page_size: int = 0,
    ) -> AsyncIterator[resources_pb2.User]:
        """Every matching user, page after page."""
        request = user_service_pb2.ListUsersRequest(
            email_domain=email_domain,
            address_email_contains=address_email_contains,
            email=email,
            order_by=order_by,
            view=view,
            page_size=page_size,
        )
        async for page in self._pages("ListUsers", self.users.ListUsers, request):
            for user in page.users:
                yield user

    async def stream_users(
        self,
        *,
        email_domain: str = "",
        address_email_contains: str = "",
        email: str = "",
        view: View = UNSPECIFIED,
        after_id: int = 0,
        batch_size: int = 0,
    ) -> AsyncIterator[resources_pb2.User]:
        """Every matching user with an id above `after_id`, in id order."""
        batches = self.stream_user_batches(
            email_domain=email_domain,
            address_email_contains=address_email_contains,
            email=email,
            view=view,
            after_id=after_id,
            batch_size=batch_size,
        )
        async for batch in batches:
            for user in batch:
                yield user

    async def stream_user_batches(
        self,
        *,
        email_domain: str = "",
        address_email_contains: str = "",
        email: str = "",
        view: View = UNSPECIFIED,
        after_id: int = 0,
        batch_size: int = 0,
    ) -> AsyncIterator[list[resources_pb2.User]]:
        """StreamUsers as it arrives, a message at a time; after UNAVAILABLE it calls
        again with after_id = the last id received (API.md)."""
        request = user_service_pb2.StreamUsersRequest(
            email_domain=email_domain,
            address_email_contains=address_email_contains,
            email=email,
            view=view,
            after_id=after_id,
            batch_size=batch_size,
        )
        resumption = Resumption(self._resume_seconds)
        while True:
            call = self.users.StreamUsers(request, metadata=self._metadata)
            try:
                async for message in call:
                    users = list(message.users)
                    if users:
                        request.after_id = users[-1].id
                        resumption.progressed()
                        yield users
                return
            except grpc.aio.AioRpcError as rpc_error:
                error = error_from(rpc_error)
                if not isinstance(error, UnavailableError):
                    raise error from rpc_error
                await resumption.wait_or_raise(error)
            finally:
                call.cancel()

    async def import_users(
        self,
        rows: Iterable[NewUser] | AsyncIterable[NewUser],
        *,
        chunk: int = IMPORT_CHUNK,
        on_sent: Callable[[int], None] | None = None,
    ) -> int:
        """ImportUsers, all or nothing: the number created. Rows go in messages of
        `chunk`; `on_sent(n)` is told each time n more rows were sent. If `rows` raises,
        the call is cancelled (the server keeps nothing) and the error propagates."""
        # No request iterator: the call is written to, so a failing row can cancel it.
        call = self.users.ImportUsers(metadata=self._metadata)  # type: ignore[call-arg]
        try:
            async for message in import_messages(rows, chunk):
                await call.write(message)
                if on_sent is not None:
                    on_sent(len(message.requests))
            await call.done_writing()
            response = await call
        except grpc.aio.AioRpcError as rpc_error:
            raise error_from(rpc_error) from rpc_error
        except BaseException:
            call.cancel()
            raise
        return response.created_count

    def watch_users(self, *, email_domain: str = "", resume_token: str = "") -> Watch:
        """Changes in commit order; `async for` over it. Its `resume_token` is where a
        later watch goes on from; after UNAVAILABLE it reconnects from there itself."""
        request = user_service_pb2.WatchUsersRequest(
            email_domain=email_domain, resume_token=resume_token
        )
        return Watch(self.users, request, self._metadata, Resumption(self._resume_seconds))

    # Addresses

    async def create_address(self, user_id: int, email: str) -> resources_pb2.Address:
        request = address_service_pb2.CreateAddressRequest(
            user_id=user_id, address=resources_pb2.Address(email=email)
        )
        return await self._unary("CreateAddress", self.addresses.CreateAddress, request)

    async def get_address(self, address_id: int) -> resources_pb2.Address:
        request = address_service_pb2.GetAddressRequest(id=address_id)
        return await self._unary("GetAddress", self.addresses.GetAddress, request)

    async def list_addresses(
        self, user_id: int, *, page_size: int = 0
    ) -> AsyncIterator[resources_pb2.Address]:
        """Every address of the user, page after page."""
        request = address_service_pb2.ListAddressesRequest(user_id=user_id, page_size=page_size)
        async for page in self._pages("ListAddresses", self.addresses.ListAddresses, request):
            for address in page.addresses:
                yield address

    async def update_address(
        self, address_id: int, email: str, *, etag: str = ""
    ) -> resources_pb2.Address:
        request = address_service_pb2.UpdateAddressRequest(
            address=resources_pb2.Address(id=address_id, email=email, etag=etag),
            update_mask=field_mask_pb2.FieldMask(paths=["email"]),
        )
        return await self._unary("UpdateAddress", self.addresses.UpdateAddress, request)

    async def delete_address(self, address_id: int, *, etag: str = "") -> None:
        request = address_service_pb2.DeleteAddressRequest(id=address_id, etag=etag)
        await self._unary("DeleteAddress", self.addresses.DeleteAddress, request)

    # Plumbing

    async def _unary(
        self,
        method: str,
        callable_: grpc.aio.UnaryUnaryMultiCallable[Request, Response],
        request: Request,
    ) -> Response:
        try:
            return await callable_(
                request, timeout=self._deadlines.get(method), metadata=self._metadata
            )
        except grpc.aio.AioRpcError as rpc_error:
            raise error_from(rpc_error) from rpc_error

    async def _pages(
        self,
        method: str,
        callable_: grpc.aio.UnaryUnaryMultiCallable[PageRequest, Page],
        request: PageRequest,
    ) -> AsyncIterator[Page]:
        """Each page of a listing, the next asked for with the last one's token."""
        while True:
            page = await self._resumed(lambda: self._unary(method, callable_, request))
            yield page
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def _resumed(self, call: Callable[[], Awaitable[T]]) -> T:
        """A page read, called again after UNAVAILABLE (the page token stays valid)."""
        resumption = Resumption(self._resume_seconds)
        while True:
            try:
                return await call()
            except UnavailableError as error:
                await resumption.wait_or_raise(error)
