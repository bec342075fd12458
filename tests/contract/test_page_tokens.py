"""Page tokens on every backend: opaque, tamper-proof, bound to their request, shared by
every server of one database."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import grpc
import pytest
from users.v1 import address_service_pb2
from users.v1.user_service_pb2 import ListUsersRequest

from service import server
from service.api.page_tokens import PageTokenCodec
from service.config import Settings
from service.domain.listing import users_scope
from service.domain.queries import Cursor, Ordering, SortField, UserFilter
from tests.paging import fresh_domain, ids_of, request_with_token, seed_users
from tests.rpc import AddressStub, UserStub, create_user, fails

Code = grpc.StatusCode


async def first_page(
    users: UserStub, running: server.RunningServer, **fields: str
) -> tuple[list[int], str, ListUsersRequest]:
    domain = fresh_domain()
    ids = await seed_users(running.engine, domain, 3)
    request = ListUsersRequest(email_domain=domain, page_size=1, **fields)  # type: ignore[arg-type]
    page = await users.ListUsers(request)
    assert page.next_page_token
    return ids, page.next_page_token, request


async def assert_bad_token(users: UserStub, request: ListUsersRequest) -> str:
    failure = await fails(users.ListUsers(request))
    assert failure.code == Code.INVALID_ARGUMENT
    assert failure.fields == ["page_token"]
    assert failure.info is not None and failure.info.reason == "INVALID_ARGUMENT"
    assert failure.info.metadata["fields"] == "page_token"
    return failure.message


async def test_token_is_opaque_urlsafe_text(users: UserStub, running: server.RunningServer) -> None:
    _ids, token, _request = await first_page(users, running, order_by="name")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("garbage", ["x", "not a token!", "AAAA", "🙂", "A" * 5000, "=="])
async def test_garbled_token_is_invalid(users: UserStub, garbage: str) -> None:
    message = await assert_bad_token(users, ListUsersRequest(page_token=garbage))
    assert "page_token" in message


async def test_edited_token_is_invalid(users: UserStub, running: server.RunningServer) -> None:
    _ids, token, request = await first_page(users, running)
    for index in (0, len(token) // 2, len(token) - 1):
        flipped = "A" if token[index] != "A" else "B"
        edited = token[:index] + flipped + token[index + 1 :]
        await assert_bad_token(users, request_with_token(request, edited))
    await assert_bad_token(users, request_with_token(request, token[:-4]))


async def test_token_rewritten_without_the_key_is_invalid(
    users: UserStub, running: server.RunningServer
) -> None:
    ids, token, request = await first_page(users, running)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    payload, mac = raw[:-32], raw[-32:]
    fields = json.loads(payload)
    fields[3] = fields[4] = ids[1]  # jump ahead: would skip a row if honoured
    rewritten = json.dumps(fields, separators=(",", ":")).encode() + mac
    forged = base64.urlsafe_b64encode(rewritten).rstrip(b"=").decode()
    await assert_bad_token(users, request_with_token(request, forged))


async def test_token_signed_with_another_key_is_invalid(
    users: UserStub, running: server.RunningServer
) -> None:
    ids, _token, request = await first_page(users, running)
    scope = users_scope(UserFilter(email_domain=request.email_domain), Ordering(SortField.ID))
    forged = PageTokenCodec(b"someone else's key").issue(scope, Cursor(ids[0], ids[0]))
    await assert_bad_token(users, request_with_token(request, forged))


@pytest.mark.parametrize(
    "change",
    [
        {"order_by": "id desc"},
        {"order_by": "name"},
        {"email_domain": "other.example"},
        {"address_email_contains": "a"},
        {"email": "a@b.io"},
    ],
)
async def test_token_reused_with_other_filters_or_order_is_invalid(
    users: UserStub, running: server.RunningServer, change: dict[str, str]
) -> None:
    _ids, token, request = await first_page(users, running)
    changed = request_with_token(request, token)
    for field, value in change.items():
        setattr(changed, field, value)
    message = await assert_bad_token(users, changed)
    assert "different request" in message


async def test_token_of_list_users_is_invalid_for_list_addresses(
    users: UserStub, addresses: AddressStub, running: server.RunningServer
) -> None:
    owner = await create_user(users, addresses=("a@x.io", "b@x.io"))
    _ids, token, _request = await first_page(users, running)
    failure = await fails(
        addresses.ListAddresses(
            address_service_pb2.ListAddressesRequest(user_id=owner.id, page_token=token)
        )
    )
    assert failure.code == Code.INVALID_ARGUMENT and failure.fields == ["page_token"]


async def test_a_bad_token_with_other_bad_fields_reports_them_all(
    users: UserStub, running: server.RunningServer
) -> None:
    _ids, _token, request = await first_page(users, running)
    bad = request_with_token(request, "garbage")
    bad.page_size = -1
    failure = await fails(users.ListUsers(bad))
    assert failure.fields == ["page_size", "page_token"]


@pytest.fixture
async def second_server(database_url: str) -> AsyncIterator[server.RunningServer]:
    """Another process's server on the same database, as a restart or a worker would be."""
    started = await server.start(Settings(host="127.0.0.1", port=0, database_url=database_url))
    yield started
    await started.stop(grace=1)


async def test_another_server_of_the_same_database_accepts_the_token(
    users: UserStub, running: server.RunningServer, second_server: server.RunningServer
) -> None:
    ids, token, request = await first_page(users, running, order_by="create_time desc")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{second_server.port}") as channel:
        rest = await UserStub(channel).ListUsers(request_with_token(request, token))
    assert ids_of(rest.users) == [ids[1]]


async def test_a_server_with_its_own_key_rejects_the_token(
    users: UserStub, running: server.RunningServer, database_url: str
) -> None:
    _ids, token, request = await first_page(users, running)
    settings = Settings(
        host="127.0.0.1", port=0, database_url=database_url, page_token_key="configured secret"
    )
    other = await server.start(settings, migrate=False)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{other.port}") as channel:
            stub = UserStub(channel)
            await assert_bad_token(stub, request_with_token(request, token))
            own = (await stub.ListUsers(request)).next_page_token
            assert (await stub.ListUsers(request_with_token(request, own))).users
    finally:
        await other.stop(grace=1)
