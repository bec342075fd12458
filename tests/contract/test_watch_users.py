"""WatchUsers (API.md, "Change stream"): every committed change once, in commit order;
resume tokens; the email_domain filter. Each test watches a domain of its own, so the
writes of other tests sharing the server never show."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from google.protobuf import field_mask_pb2
from users.v1 import (
    address_service_pb2,
    resources_pb2,
    user_service_pb2,
)

from tests.rpc import AddressStub, UserStub, fails, fresh_email

Change = user_service_pb2.UserChange
CREATED, UPDATED, DELETED = Change.TYPE_CREATED, Change.TYPE_UPDATED, Change.TYPE_DELETED
WAIT_SECONDS = 10.0


def fresh_domain() -> str:
    return f"w{uuid.uuid4().hex[:10]}.example"


class Watch:
    def __init__(
        self,
        call: grpc.aio.UnaryStreamCall[user_service_pb2.WatchUsersRequest, Change],
        start_token: str,
    ) -> None:
        self.call = call
        self.start_token = start_token

    async def next(self, count: int = 1) -> list[Change]:
        received: list[Change] = []
        async with asyncio.timeout(WAIT_SECONDS):
            while len(received) < count:
                message = await self.call.read()
                assert isinstance(message, Change), "the watch ended"
                received.append(message)
        return received

    async def nothing_more(self, seconds: float = 0.5) -> None:
        try:
            async with asyncio.timeout(seconds):
                message = await self.call.read()
        except TimeoutError:
            return
        raise AssertionError(f"an unexpected change: {message}")


@asynccontextmanager
async def watching(users: UserStub, domain: str, resume_token: str = "") -> AsyncIterator[Watch]:
    call = users.WatchUsers(
        user_service_pb2.WatchUsersRequest(email_domain=domain, resume_token=resume_token)
    )
    try:
        # The headers come once the watch is on: what is written after them is seen.
        headers = dict(await call.initial_metadata())
        yield Watch(call, str(headers["resume-token"]))
    finally:
        call.cancel()


async def create(users: UserStub, domain: str, name: str = "Watched") -> resources_pb2.User:
    request = user_service_pb2.CreateUserRequest(
        user=resources_pb2.User(name=name, email=fresh_email(domain))
    )
    return await users.CreateUser(request)


async def test_every_write_path_is_one_change_in_order(
    users: UserStub, addresses: AddressStub
) -> None:
    domain = fresh_domain()
    async with watching(users, domain) as watch:
        user = await create(users, domain)
        renamed = await users.UpdateUser(
            user_service_pb2.UpdateUserRequest(
                user=resources_pb2.User(id=user.id, name="Renamed", etag=user.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            )
        )
        address = await addresses.CreateAddress(
            address_service_pb2.CreateAddressRequest(
                user_id=user.id, address=resources_pb2.Address(email=fresh_email())
            )
        )
        await addresses.DeleteAddress(address_service_pb2.DeleteAddressRequest(id=address.id))
        await users.DeleteUser(user_service_pb2.DeleteUserRequest(id=user.id))
        changes = await watch.next(5)
        await watch.nothing_more()

    assert [c.type for c in changes] == [CREATED, UPDATED, UPDATED, UPDATED, DELETED]
    assert changes[0].user == user
    assert changes[1].user == renamed
    assert len({c.user.etag for c in changes[:4]}) == 4, "one etag version per change"
    # API.md: a deleted user is its id and email only.
    assert changes[4].user == resources_pb2.User(id=user.id, email=user.email)
    assert len({c.resume_token for c in changes}) == 5
    assert all(c.commit_time.seconds > 0 for c in changes)


async def test_bulk_writes_and_force_delete_are_changes(users: UserStub) -> None:
    domain = fresh_domain()
    async with watching(users, domain) as watch:
        batch = await users.BatchCreateUsers(
            user_service_pb2.BatchCreateUsersRequest(
                requests=[
                    user_service_pb2.CreateUserRequest(
                        user=resources_pb2.User(name=f"B{i}", email=fresh_email(domain))
                    )
                    for i in range(3)
                ]
            )
        )
        imported = [
            user_service_pb2.ImportUsersRequest(
                requests=[
                    user_service_pb2.CreateUserRequest(
                        user=resources_pb2.User(name=f"I{i}", email=fresh_email(domain))
                    )
                    for i in range(4)
                ]
            )
        ]
        response = await users.ImportUsers(iter(imported))
        assert response.created_count == 4
        with_address = await users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(
                    name="Has",
                    email=fresh_email(domain),
                    addresses=[resources_pb2.Address(email=fresh_email())],
                )
            )
        )
        await users.DeleteUser(user_service_pb2.DeleteUserRequest(id=with_address.id, force=True))
        changes = await watch.next(9)
        await watch.nothing_more()

    assert [c.type for c in changes] == [CREATED] * 8 + [DELETED]
    assert [c.user.id for c in changes[:3]] == [u.id for u in batch.users]
    assert {c.user.name for c in changes[3:7]} == {f"I{i}" for i in range(4)}
    assert changes[7].user.id == changes[8].user.id == with_address.id
    assert not changes[7].user.addresses, "changes carry the BASIC view"


async def test_a_failed_write_is_no_change(users: UserStub) -> None:
    domain = fresh_domain()
    async with watching(users, domain) as watch:
        user = await create(users, domain)
        await fails(
            users.CreateUser(
                user_service_pb2.CreateUserRequest(
                    user=resources_pb2.User(name="Again", email=user.email)
                )
            )
        )
        await fails(
            users.UpdateUser(
                user_service_pb2.UpdateUserRequest(
                    user=resources_pb2.User(id=user.id, name="Stale", etag="0" * 24),
                    update_mask=field_mask_pb2.FieldMask(paths=["name"]),
                )
            )
        )
        await fails(
            users.BatchCreateUsers(
                user_service_pb2.BatchCreateUsersRequest(
                    requests=[
                        user_service_pb2.CreateUserRequest(
                            user=resources_pb2.User(name="Ok", email=fresh_email(domain))
                        ),
                        user_service_pb2.CreateUserRequest(
                            user=resources_pb2.User(name="Taken", email=user.email)
                        ),
                    ]
                )
            )
        )
        [only] = await watch.next(1)
        await watch.nothing_more()
    assert only.type == CREATED and only.user.id == user.id


async def test_no_token_starts_from_now_and_a_token_resumes_exactly_after_it(
    users: UserStub,
) -> None:
    domain = fresh_domain()
    before = await create(users, domain, "Before")
    async with watching(users, domain) as watch:
        made = [await create(users, domain, f"N{i}") for i in range(3)]
        first, second, third = await watch.next(3)
        await watch.nothing_more()
    assert [c.user.id for c in (first, second, third)] == [u.id for u in made]
    assert before.id not in {c.user.id for c in (first, second, third)}

    async with watching(users, domain, first.resume_token) as resumed:
        assert resumed.start_token == first.resume_token
        again = await resumed.next(2)
        later = await create(users, domain, "Later")
        [last] = await resumed.next(1)
        await resumed.nothing_more()
    assert again == [second, third]
    assert last.user.id == later.id

    # The headers' token of a watch that saw nothing resumes after what came since.
    async with watching(users, domain, third.resume_token) as quiet:
        token = quiet.start_token
    async with watching(users, domain, token) as after_quiet:
        await after_quiet.next(1)  # "Later"
        await after_quiet.nothing_more()


async def test_the_domain_filter_folds_case_and_skips_other_domains(users: UserStub) -> None:
    domain, other = fresh_domain(), fresh_domain()
    async with watching(users, domain.upper()) as watch:
        await create(users, other)
        mine = await create(users, domain)
        await create(users, other)
        [change] = await watch.next(1)
        await watch.nothing_more()
    assert change.user.id == mine.id


async def test_garbled_or_forged_tokens_and_bad_domains_are_invalid(users: UserStub) -> None:
    async with watching(users, fresh_domain()) as watch:
        genuine = watch.start_token
    raw = bytearray(base64.urlsafe_b64decode(genuine + "=="))
    raw[8] ^= 1  # another position, the signature left as it was
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    for token in ("garbage", genuine[:-1], forged, genuine + "A", "é" * 34):
        call = users.WatchUsers(user_service_pb2.WatchUsersRequest(resume_token=token))
        failure = await fails(call.read())
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, token
        assert failure.fields == ["resume_token"], token
    for domain in ("a@b.com", "x\x00y", "d" * 300):
        call = users.WatchUsers(user_service_pb2.WatchUsersRequest(email_domain=domain))
        failure = await fails(call.read())
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, domain
        assert failure.fields == ["email_domain"], domain
