"""One storm client process: a seeded mix of every users.v1 call, with deadlines from
0.1 ms to 100 ms, streams dropped part-way, imports abandoned mid-stream and bytes that
are no request at all. Writes its outcomes and its ledger as JSON.

    python -m tests.storm.client TARGET SEED CALLS OUT.json [--tasks N] [--doomed]

A --doomed client is SIGKILLed by the test mid-call: it writes no result, only users
under its own domain, and its imports are never half-closed, so none may land.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from users.v1 import (
    address_service_pb2,
    address_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
    user_service_pb2_grpc,
)

from tests.storm.ledger import ABSENT, Ledger, UserEntry

STORM_DOMAIN = "storm.example"
DOOMED_DOMAIN = "doomed.example"
# What grpc's own client says, at times, for a client stream whose deadline passed while
# it was sending a message (tests/ops/test_abandoned_imports.py): the client's core, not
# the server, whose INTERNAL would carry its own details and an ErrorInfo. The ledger
# counts such a call as a write that may or may not have landed, as for any failure
# that is not definite.
CLIENT_CORE_INTERNAL = "Internal error from Core"
# Every method of both services, for the calls that send undecodable bytes.
METHODS = (
    *(f"/users.v1.UserService/{m}" for m in ("CreateUser", "GetUser", "BatchGetUsers")),
    *(f"/users.v1.UserService/{m}" for m in ("UpdateUser", "DeleteUser", "ListUsers")),
    "/users.v1.AddressService/CreateAddress",
    "/users.v1.AddressService/GetAddress",
    "/users.v1.AddressService/ListAddresses",
    "/users.v1.AddressService/UpdateAddress",
    "/users.v1.AddressService/DeleteAddress",
)
STREAMING_METHODS = ("/users.v1.UserService/StreamUsers", "/users.v1.UserService/WatchUsers")


def _identity(data: bytes) -> bytes:
    return data


class Storm:
    def __init__(self, channel: grpc.aio.Channel, seed: int, domain: str) -> None:
        self.channel = channel
        self.users: Any = user_service_pb2_grpc.UserServiceStub(channel)
        self.addresses: Any = address_service_pb2_grpc.AddressServiceStub(channel)
        self.random = random.Random(seed)
        self.domain = domain
        self.ledger = Ledger()
        self.outcomes: Counter[str] = Counter()
        self.surprises: list[str] = []  # the details of INTERNAL and UNKNOWN outcomes
        self.calls = 0
        # Users this task created with a known id: (id, entry), and address ids by key.
        self.owned: list[tuple[int, UserEntry]] = []
        self.address_ids: dict[str, int] = {}

    # ---------------------------------------------------------------- plumbing
    def record(self, method: str, code: grpc.StatusCode, details: str | None = None) -> None:
        self.outcomes[f"{method} {code.name}"] += 1
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and not (
            method.startswith("ImportUsers") and details == CLIENT_CORE_INTERNAL
        ):
            self.surprises.append(f"{method} {code.name}: {details}")

    def deadline(self) -> float:
        # Log-uniform from 0.1 ms to 100 ms: most fail at some layer, many succeed.
        return float(10 ** self.random.uniform(-4, -1))

    def email(self, kind: str) -> str:
        return f"{kind}-{uuid.uuid4().hex[:16]}@{self.domain}"

    async def unary(self, method: str, call: Awaitable[Any]) -> tuple[grpc.StatusCode, Any]:
        self.calls += 1
        details = None
        try:
            response = await call
        except grpc.aio.AioRpcError as error:
            code, details = error.code(), error.details()
            response = None
        except asyncio.CancelledError:
            # grpc's client ends a client stream cut short this way, not with an error.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            code, response = grpc.StatusCode.CANCELLED, None
        else:
            code = grpc.StatusCode.OK
        self.record(method, code, details)
        return code, response

    async def streamed(self, method: str, call: Any, keep: int) -> None:
        """Reads up to `keep` messages, then drops the call."""
        self.calls += 1
        code, details = grpc.StatusCode.OK, None
        try:
            received = 0
            async for _message in call:
                received += 1
                if received >= keep:
                    call.cancel()
                    code = grpc.StatusCode.CANCELLED
                    break
        except grpc.aio.AioRpcError as error:
            code, details = error.code(), error.details()
        self.record(method, code, details)

    def pick_owned(self) -> tuple[int, UserEntry] | None:
        return self.random.choice(self.owned) if self.owned else None

    # ---------------------------------------------------------------- writes
    async def create_user(self) -> None:
        email = self.email("u")
        entry = self.ledger.user(email)
        keys = [self.email("a") for _ in range(self.random.choice((0, 0, 1, 2)))]
        request = user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(
                name="n0", email=email, addresses=[resources_pb2.Address(email=k) for k in keys]
            ),
            request_id=uuid.uuid4().hex if self.random.random() < 0.5 else "",
        )
        code, user = await self.unary(
            "CreateUser", self.users.CreateUser(request, timeout=self.deadline())
        )
        entry.user.wrote("n0", code)
        for key in keys:
            entry.addresses.setdefault(key, type(entry.user)()).wrote(key, code)
        if code == grpc.StatusCode.OK:
            self.owned.append((user.id, entry))
            for address in user.addresses:
                self.address_ids[address.email] = address.id

    async def batch_create(self) -> None:
        emails = [self.email("b") for _ in range(self.random.randint(1, 5))]
        request = user_service_pb2.BatchCreateUsersRequest(
            requests=[
                user_service_pb2.CreateUserRequest(user=resources_pb2.User(name="b", email=e))
                for e in emails
            ]
        )
        code, _ = await self.unary(
            "BatchCreateUsers", self.users.BatchCreateUsers(request, timeout=self.deadline())
        )
        for email in emails:
            self.ledger.user(email).user.wrote("b", code)
        self.ledger.groups.append(emails)

    async def import_users(self, *, abandon: bool) -> None:
        messages = [
            [self.email("i") for _ in range(self.random.randint(1, 40))]
            for _ in range(self.random.randint(1, 3))
        ]
        emails = [e for message in messages for e in message]
        never = asyncio.Event()

        async def requests() -> AsyncIterator[user_service_pb2.ImportUsersRequest]:
            for message in messages:
                yield user_service_pb2.ImportUsersRequest(
                    requests=[
                        user_service_pb2.CreateUserRequest(
                            user=resources_pb2.User(name="i", email=e)
                        )
                        for e in message
                    ]
                )
            if abandon:  # the stream is never half-closed: nothing of it may land
                await never.wait()

        call = self.users.ImportUsers(requests(), timeout=self.deadline() * 5)
        if abandon:
            method = "ImportUsers(abandoned)"
            self.calls += 1
            try:
                async with asyncio.timeout(self.random.uniform(0.001, 0.05)):
                    await call
                code = grpc.StatusCode.OK
                details = None
            except TimeoutError:
                call.cancel()
                code, details = grpc.StatusCode.CANCELLED, None
            except grpc.aio.AioRpcError as error:
                code, details = error.code(), error.details()
            self.record(method, code, details)
            for email in emails:
                self.ledger.user(email)  # surely absent: its possible states stay {ABSENT}
            assert code != grpc.StatusCode.OK, "an import that never ended returned OK"
        else:
            code, _ = await self.unary("ImportUsers", call)
            for email in emails:
                self.ledger.user(email).user.wrote("i", code)
            self.ledger.groups.append(emails)

    async def update_user(self) -> None:
        picked = self.pick_owned()
        if picked is None:
            return await self.create_user()
        user_id, entry = picked
        name = f"n{uuid.uuid4().hex[:8]}"
        request = user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=user_id, name=name),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        )
        code, _ = await self.unary(
            "UpdateUser", self.users.UpdateUser(request, timeout=self.deadline())
        )
        entry.user.wrote(name, code)

    async def delete_user(self) -> None:
        picked = self.pick_owned()
        if picked is None:
            return
        user_id, entry = picked
        force = self.random.random() < 0.7
        code, _ = await self.unary(
            "DeleteUser",
            self.users.DeleteUser(
                user_service_pb2.DeleteUserRequest(id=user_id, force=force),
                timeout=self.deadline(),
            ),
        )
        if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
            return
        entry.user.wrote(ABSENT, code)
        if force:
            for address in entry.addresses.values():
                address.wrote(ABSENT, code)
        if code == grpc.StatusCode.OK:
            self.owned.remove(picked)

    async def create_address(self) -> None:
        picked = self.pick_owned()
        if picked is None:
            return
        user_id, entry = picked
        key = self.email("a")
        request = address_service_pb2.CreateAddressRequest(
            user_id=user_id, address=resources_pb2.Address(email=key)
        )
        code, address = await self.unary(
            "CreateAddress", self.addresses.CreateAddress(request, timeout=self.deadline())
        )
        if code == grpc.StatusCode.NOT_FOUND:  # deleted by a delete that timed out
            return
        entry.addresses.setdefault(key, type(entry.user)()).wrote(key, code)
        if code == grpc.StatusCode.OK:
            self.address_ids[key] = address.id

    def pick_address(self) -> tuple[UserEntry, str, int] | None:
        picked = self.pick_owned()
        if picked is None:
            return None
        _, entry = picked
        known = [k for k in entry.addresses if k in self.address_ids]
        if not known:
            return None
        key = self.random.choice(known)
        return entry, key, self.address_ids[key]

    async def update_address(self) -> None:
        picked = self.pick_address()
        if picked is None:
            return await self.create_address()
        entry, key, address_id = picked
        email = self.email("a")
        request = address_service_pb2.UpdateAddressRequest(
            address=resources_pb2.Address(id=address_id, email=email),
            update_mask=field_mask_pb2.FieldMask(paths=["email"]),
        )
        code, _ = await self.unary(
            "UpdateAddress", self.addresses.UpdateAddress(request, timeout=self.deadline())
        )
        entry.addresses[key].wrote(email, code)

    async def delete_address(self) -> None:
        picked = self.pick_address()
        if picked is None:
            return
        entry, key, address_id = picked
        code, _ = await self.unary(
            "DeleteAddress",
            self.addresses.DeleteAddress(
                address_service_pb2.DeleteAddressRequest(id=address_id), timeout=self.deadline()
            ),
        )
        entry.addresses[key].wrote(ABSENT, code)
        if code == grpc.StatusCode.OK:
            del self.address_ids[key]

    # ---------------------------------------------------------------- reads
    def some_id(self) -> int:
        picked = self.pick_owned()
        return picked[0] if picked else self.random.randint(1, 1000)

    def view(self) -> resources_pb2.UserView.ValueType:
        return self.random.choice(
            (
                resources_pb2.USER_VIEW_UNSPECIFIED,
                resources_pb2.USER_VIEW_BASIC,
                resources_pb2.USER_VIEW_FULL,
            )
        )

    async def get_user(self) -> None:
        request = user_service_pb2.GetUserRequest(id=self.some_id(), view=self.view())
        await self.unary("GetUser", self.users.GetUser(request, timeout=self.deadline()))

    async def batch_get(self) -> None:
        ids = [self.some_id() for _ in range(self.random.randint(1, 20))]
        request = user_service_pb2.BatchGetUsersRequest(ids=ids, view=self.view())
        await self.unary(
            "BatchGetUsers", self.users.BatchGetUsers(request, timeout=self.deadline())
        )

    async def list_users(self) -> None:
        request = user_service_pb2.ListUsersRequest(
            page_size=self.random.choice((1, 10, 200, 1000)),
            email_domain=self.random.choice(("", self.domain, STORM_DOMAIN)),
            address_email_contains=self.random.choice(("", "", "a-")),
            view=self.view(),
            order_by=self.random.choice(("", "name", "email desc", "create_time")),
        )
        await self.unary("ListUsers", self.users.ListUsers(request, timeout=self.deadline()))

    async def stream_users(self) -> None:
        request = user_service_pb2.StreamUsersRequest(
            batch_size=self.random.choice((1, 1, 5, 100)),
            view=self.view(),
            email_domain=self.random.choice(("", self.domain)),
        )
        call = self.users.StreamUsers(request, timeout=self.deadline() * 10)
        await self.streamed("StreamUsers", call, keep=self.random.randint(1, 50))

    async def watch_users(self) -> None:
        call = self.users.WatchUsers(user_service_pb2.WatchUsersRequest(), timeout=self.deadline())
        await self.streamed("WatchUsers", call, keep=1)

    async def get_address(self) -> None:
        ids = list(self.address_ids.values())
        address_id = self.random.choice(ids) if ids else 1
        await self.unary(
            "GetAddress",
            self.addresses.GetAddress(
                address_service_pb2.GetAddressRequest(id=address_id), timeout=self.deadline()
            ),
        )

    async def list_addresses(self) -> None:
        request = address_service_pb2.ListAddressesRequest(
            user_id=self.some_id(), page_size=self.random.choice((1, 5, 100))
        )
        await self.unary(
            "ListAddresses", self.addresses.ListAddresses(request, timeout=self.deadline())
        )

    async def garbage(self) -> None:
        """Bytes that decode as no request message, to a random method."""
        noise = self.random.randbytes(self.random.randint(1, 64))
        if self.random.random() < 0.8:
            unary = self.channel.unary_unary(self.random.choice(METHODS), _identity, _identity)
            await self.unary("garbage", unary(noise, timeout=self.deadline()))
        else:
            method = self.random.choice(STREAMING_METHODS)
            stream = self.channel.unary_stream(method, _identity, _identity)
            await self.streamed("garbage-stream", stream(noise, timeout=self.deadline()), keep=1)

    # ---------------------------------------------------------------- the mix
    def operations(self) -> list[tuple[float, Callable[[], Awaitable[None]]]]:
        return [
            (10, self.create_user),
            (3, self.batch_create),
            (2, lambda: self.import_users(abandon=False)),
            (2, lambda: self.import_users(abandon=True)),
            (6, self.update_user),
            (3, self.delete_user),
            (4, self.create_address),
            (3, self.update_address),
            (2, self.delete_address),
            (12, self.get_user),
            (4, self.batch_get),
            (6, self.list_users),
            (8, self.stream_users),
            (1, self.watch_users),
            (4, self.get_address),
            (4, self.list_addresses),
            (4, self.garbage),
        ]

    async def run(self, calls: int) -> None:
        weighted = self.operations()
        weights = [w for w, _ in weighted]
        while self.calls < calls:
            (operation,) = self.random.choices([op for _, op in weighted], weights)
            await operation()


async def doomed(storm: Storm) -> None:
    """Until killed: imports that are never half-closed, streams and creates."""
    while True:
        kind = storm.random.random()
        if kind < 0.4:
            await storm.import_users(abandon=True)
        elif kind < 0.7:
            await storm.stream_users()
        else:
            await storm.create_user()


async def run_storm(args: argparse.Namespace) -> dict[str, object]:
    async with grpc.aio.insecure_channel(args.target) as channel:
        domain = f"c{args.seed}.{DOOMED_DOMAIN if args.doomed else STORM_DOMAIN}"
        storms = [Storm(channel, args.seed * 1000 + n, domain) for n in range(args.tasks)]
        if args.doomed:
            await asyncio.gather(*(doomed(s) for s in storms))
        await asyncio.gather(*(s.run(args.calls // args.tasks) for s in storms))
    outcomes: Counter[str] = Counter()
    for storm in storms:
        outcomes.update(storm.outcomes)
    return {
        "outcomes": dict(outcomes),
        "ledgers": [s.ledger.to_json() for s in storms],
        "surprises": [surprise for s in storms for surprise in s.surprises],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("seed", type=int)
    parser.add_argument("calls", type=int)
    parser.add_argument("out")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--doomed", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run_storm(args))
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
