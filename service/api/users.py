"""users.v1.UserService servicer: parse the request, call the use case, convert back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc
from google.protobuf import empty_pb2
from users.v1 import user_service_pb2 as pb
from users.v1 import user_service_pb2_grpc as pb_grpc
from users.v1.resources_pb2 import User as UserMessage

from service.api import convert
from service.api.calls import resume_point
from service.api.errors import StreamBrokenOffError
from service.api.resume_tokens import ResumeTokenCodec
from service.domain import bulk, changes, imports, listing, streaming, users
from service.domain.errors import UnavailableError
from service.domain.models import View
from service.domain.ports import UnitOfWorkFactory
from service.domain.queries import PageTokens

Ctx = grpc.aio.ServicerContext[Any, Any]
SERVICE = "users.v1.UserService"
# WatchUsers' response header: the resume token of the position the watch starts after.
RESUME_TOKEN_HEADER = "resume-token"  # noqa: S105 - a header name, not a secret


class UserService(pb_grpc.UserServiceServicer):
    def __init__(
        self,
        new_uow: UnitOfWorkFactory,
        page_tokens: PageTokens,
        change_feed: changes.ChangeFeed,
        resume_tokens: ResumeTokenCodec,
        *,
        import_idle_seconds: float = imports.IDLE_SECONDS,
        streamed: Callable[[int], None] | None = None,
    ) -> None:
        """`streamed`: told how many users each StreamUsers message carries (metrics)."""
        self._uow = new_uow
        self._streamed = streamed
        self._page_tokens = page_tokens
        self._import_idle_seconds = import_idle_seconds
        self._changes = change_feed
        self._resume_tokens = resume_tokens

    async def CreateUser(self, request: pb.CreateUserRequest, context: Ctx) -> UserMessage:
        user = convert.user_input_of(request.user) if request.HasField("user") else None
        created = await users.create_user(self._uow, user, request.request_id)
        return convert.user_to_proto(created)

    async def GetUser(self, request: pb.GetUserRequest, context: Ctx) -> UserMessage:
        user = await users.get_user(self._uow, request.id, convert.view_of(request.view))
        return convert.user_to_proto(user)

    async def BatchGetUsers(
        self, request: pb.BatchGetUsersRequest, context: Ctx
    ) -> pb.BatchGetUsersResponse:
        found = await users.batch_get_users(
            self._uow, list(request.ids), convert.view_of(request.view)
        )
        return pb.BatchGetUsersResponse(users=[convert.user_to_proto(u) for u in found])

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: Ctx) -> UserMessage:
        updated = await users.update_user(
            self._uow,
            request.user.id,
            convert.user_input_of(request.user),
            request.user.etag,
            list(request.update_mask.paths),
        )
        return convert.user_to_proto(updated)

    async def DeleteUser(self, request: pb.DeleteUserRequest, context: Ctx) -> empty_pb2.Empty:
        await users.delete_user(self._uow, request.id, request.etag, request.force)
        return empty_pb2.Empty()

    async def ListUsers(self, request: pb.ListUsersRequest, context: Ctx) -> pb.ListUsersResponse:
        page = await listing.list_users(
            self._uow, self._page_tokens, convert.list_users_input_of(request)
        )
        return pb.ListUsersResponse(
            users=[convert.user_to_proto(u) for u in page.items],
            next_page_token=page.next_page_token,
        )

    async def StreamUsers(
        self, request: pb.StreamUsersRequest, context: Ctx
    ) -> AsyncIterator[pb.StreamUsersResponse]:
        wanted = streaming.StreamInput(
            email_domain=request.email_domain,
            address_email_contains=request.address_email_contains,
            email=request.email,
            view=convert.view_of(request.view, default=View.BASIC),
            after_id=request.after_id,
            batch_size=request.batch_size,
        )
        streamed = self._streamed
        async for batch in streaming.stream_users(self._uow, wanted):
            if streamed is not None:
                streamed(len(batch.users))
            yield convert.stream_response_of(batch)

    async def BatchCreateUsers(
        self, request: pb.BatchCreateUsersRequest, context: Ctx
    ) -> pb.BatchCreateUsersResponse:
        created = await bulk.batch_create_users(self._uow, _rows_of(request.requests))
        return pb.BatchCreateUsersResponse(users=[convert.user_to_proto(u) for u in created])

    async def ImportUsers(
        self, request_iterator: AsyncIterator[pb.ImportUsersRequest], context: Ctx
    ) -> pb.ImportUsersResponse:
        count = await imports.import_users(
            self._uow, _messages_of(request_iterator), self._import_idle_seconds
        )
        return pb.ImportUsersResponse(created_count=count)

    async def WatchUsers(  # type: ignore[override]  # sends changes encoded once for all
        self, request: pb.WatchUsersRequest, context: Ctx
    ) -> AsyncIterator[bytes]:
        tokens = self._resume_tokens
        wanted = changes.WatchInput(
            after=tokens.read(request.resume_token) if request.resume_token else None,
            email_domain=changes.check_watch(request.email_domain),
        )
        last = await self._changes.start_position(wanted)
        resume_point.set(lambda: {"resume_token": tokens.issue(last)})
        # The headers say the watch is on, and from where: a client may write once it
        # has them, and resume from this token if the stream breaks before any change.
        await context.send_initial_metadata(((RESUME_TOKEN_HEADER, tokens.issue(last)),))
        try:
            async for change in self._changes.watch(last, wanted.email_domain):
                last = change.position
                yield change.payload
        except UnavailableError as error:
            raise StreamBrokenOffError(error, {"resume_token": tokens.issue(last)}) from error


def _rows_of(requests: Iterable[pb.CreateUserRequest]) -> list[bulk.RowInput]:
    # ImportUsers converts up to a million rows a call: names bound once, fields
    # positional (measured in BENCHMARKS.md, bulk).
    row_input, user_input_of = bulk.RowInput, convert.user_input_of
    return [
        row_input(user_input_of(r.user) if r.HasField("user") else None, r.request_id)
        for r in requests
    ]


async def _messages_of(
    messages: AsyncIterator[pb.ImportUsersRequest],
) -> AsyncIterator[list[bulk.RowInput]]:
    async for message in messages:
        yield _rows_of(message.requests)
