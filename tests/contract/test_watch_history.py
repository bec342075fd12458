"""The ordering trap (issue 13): concurrent writers, some holding their transaction open
for a while and some rolling back, while watchers read, drop and resume from their last
token. Each watcher must end with the committed history exactly: every committed change
once, nothing rolled back, each user's versions in order, a write that began after
another committed after it, and the same sequence for every watcher."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import grpc
from google.protobuf import field_mask_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from users.v1 import address_service_pb2, resources_pb2, user_service_pb2

from service.db.engine import create_engine
from service.domain.models import etag_of
from tests.contract.test_watch_users import CREATED, DELETED, UPDATED, Change, fresh_domain
from tests.rpc import AddressStub, UserStub, fresh_email

WRITERS = 6
WRITES_PER_WRITER = 25
WATCHERS = 3
SEED = 13
DELIVERY_SECONDS = 30.0

# A change as the test names it: (type, user id, etag); a delete has no etag.
Key = tuple[int, int, str]


@dataclass
class Write:
    change_type: int
    user_id: int
    etag: str | None  # None: an address write, whose user etag the test does not learn
    started: float  # before its transaction began
    committed: float  # after its commit returned

    @property
    def key(self) -> Key | None:
        if self.change_type == DELETED:
            return (DELETED, self.user_id, "")
        return None if self.etag is None else (self.change_type, self.user_id, self.etag)


@dataclass
class History:
    committed: list[Write] = field(default_factory=list)
    rolled_back: int = 0
    live: dict[int, str] = field(default_factory=dict)  # user id -> etag


def key_of(change: Change) -> Key:
    etag = "" if change.type == DELETED else change.user.etag
    return (change.type, change.user.id, etag)


class Writer:
    def __init__(
        self,
        users: UserStub,
        addresses: AddressStub,
        engine: AsyncEngine,
        *,
        domain: str,
        history: History,
        rng: random.Random,
    ) -> None:
        self.users, self.addresses, self.engine = users, addresses, engine
        self.domain, self.history, self.rng = domain, history, rng

    async def run(self) -> None:
        for _ in range(WRITES_PER_WRITER):
            live = list(self.history.live)
            roll = self.rng.random()
            if not live or roll < 0.25:
                await self.create()
            elif roll < 0.55:
                await self.held_update(self.rng.choice(live))
            elif roll < 0.7:
                await self.rename(self.rng.choice(live))
            elif roll < 0.8:
                await self.address_write(self.rng.choice(live))
            elif roll < 0.88:
                await self.batch_create()
            else:
                await self.delete(self.rng.choice(live))

    def commit(self, change_type: int, user_id: int, etag: str | None, started: float) -> None:
        self.history.committed.append(Write(change_type, user_id, etag, started, time.monotonic()))

    async def create(self) -> None:
        started = time.monotonic()
        user = await self.users.CreateUser(
            user_service_pb2.CreateUserRequest(
                user=resources_pb2.User(name="w", email=fresh_email(self.domain))
            )
        )
        self.commit(CREATED, user.id, user.etag, started)
        self.history.live[user.id] = user.etag

    async def batch_create(self) -> None:
        started = time.monotonic()
        response = await self.users.BatchCreateUsers(
            user_service_pb2.BatchCreateUsersRequest(
                requests=[
                    user_service_pb2.CreateUserRequest(
                        user=resources_pb2.User(name="b", email=fresh_email(self.domain))
                    )
                    for _ in range(self.rng.randint(1, 4))
                ]
            )
        )
        for user in response.users:
            self.commit(CREATED, user.id, user.etag, started)
            self.history.live[user.id] = user.etag

    async def held_update(self, user_id: int) -> None:
        """A transaction of its own on the database that stays open a random while, then
        commits or rolls back: its change takes an id early and may commit late."""
        started = time.monotonic()
        async with self.engine.connect() as connection:
            await connection.execute(
                text("UPDATE users SET name = :name, version = version + 1 WHERE id = :id"),
                {"name": f"h{self.rng.randint(0, 999)}", "id": user_id},
            )
            version = (
                await connection.execute(
                    text("SELECT version FROM users WHERE id = :id"), {"id": user_id}
                )
            ).scalar()
            await asyncio.sleep(self.rng.uniform(0, 0.2))
            if version is None:  # deleted meanwhile: the update touched nothing
                await connection.rollback()
                return
            if self.rng.random() < 0.3:
                await connection.rollback()
                self.history.rolled_back += 1
                return
            await connection.commit()
        self.commit(UPDATED, user_id, etag_of("u", user_id, int(version)), started)

    async def rename(self, user_id: int) -> None:
        started = time.monotonic()
        try:
            user = await self.users.UpdateUser(
                user_service_pb2.UpdateUserRequest(
                    user=resources_pb2.User(id=user_id, name=f"r{self.rng.randint(0, 999)}"),
                    update_mask=field_mask_pb2.FieldMask(paths=["name"]),
                )
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND, error
            return
        self.commit(UPDATED, user.id, user.etag, started)

    async def address_write(self, user_id: int) -> None:
        started = time.monotonic()
        try:
            await self.addresses.CreateAddress(
                address_service_pb2.CreateAddressRequest(
                    user_id=user_id, address=resources_pb2.Address(email=fresh_email())
                )
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND, error
            return
        # CreateAddress answers with the address: the user's new etag is not known here
        # (a read could see a later write), so the check counts this change per user.
        self.commit(UPDATED, user_id, None, started)

    async def delete(self, user_id: int) -> None:
        started = time.monotonic()
        self.history.live.pop(user_id, None)
        try:
            await self.users.DeleteUser(user_service_pb2.DeleteUserRequest(id=user_id, force=True))
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND, error
            return
        self.commit(DELETED, user_id, "", started)


class Watcher:
    """Reads a while, drops the call, resumes from its last token; again and again."""

    def __init__(self, users: UserStub, domain: str, token: str, rng: random.Random) -> None:
        self.users, self.domain, self.token, self.rng = users, domain, token, rng
        self.seen: list[Key] = []
        self.resumes = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            call = self.users.WatchUsers(
                user_service_pb2.WatchUsersRequest(
                    email_domain=self.domain, resume_token=self.token
                )
            )
            keep = self.rng.randint(1, 15)
            try:
                for _ in range(keep):
                    try:
                        async with asyncio.timeout(0.3):
                            change = await call.read()
                    except TimeoutError:
                        break
                    assert isinstance(change, Change), change
                    self.seen.append(key_of(change))
                    self.token = change.resume_token
            finally:
                call.cancel()
            self.resumes += 1


async def test_watchers_resuming_at_random_see_the_committed_history_exactly(
    users: UserStub, addresses: AddressStub, database_url: str
) -> None:
    rng = random.Random(SEED)
    domain = fresh_domain()
    start = users.WatchUsers(user_service_pb2.WatchUsersRequest(email_domain=domain))
    token = str(dict(await start.initial_metadata())["resume-token"])
    start.cancel()

    history = History()
    engine = create_engine(database_url)
    try:
        watchers = [
            Watcher(users, domain, token, random.Random(rng.random())) for _ in range(WATCHERS)
        ]
        stop = asyncio.Event()
        watching = [asyncio.create_task(w.run(stop)) for w in watchers]
        writers = [
            Writer(
                users,
                addresses,
                engine,
                domain=domain,
                history=history,
                rng=random.Random(rng.random()),
            )
            for _ in range(WRITERS)
        ]
        await asyncio.gather(*(w.run() for w in writers))
        expected = len(history.committed)
        async with asyncio.timeout(DELIVERY_SECONDS):
            while any(len(w.seen) < expected for w in watchers):  # noqa: ASYNC110 - polls
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # anything extra would have arrived by now
        stop.set()
        await asyncio.gather(*watching)
    finally:
        await engine.dispose()

    assert history.rolled_back, "the seed should roll some transactions back"
    sequence = watchers[0].seen
    for watcher in watchers:
        assert watcher.resumes > 3
        assert len(watcher.seen) == len(set(watcher.seen)), "a change came twice"
        assert watcher.seen == sequence, "watchers disagree"
    known = {w.key for w in history.committed if w.key is not None}
    assert known <= set(sequence), f"missing {known - set(sequence)}"
    assert len(sequence) == len(history.committed), "a change that no write committed"

    # Per user: created at version 1, then one version more per committed update, in
    # version order, and a delete last if one was committed. A rolled-back update would
    # show as a version too many, a lost one as a gap.
    by_user: dict[int, list[Key]] = {}
    for key in sequence:
        by_user.setdefault(key[1], []).append(key)
    for user_id, keys in by_user.items():
        writes = [w for w in history.committed if w.user_id == user_id]
        update_count = sum(w.change_type == UPDATED for w in writes)
        deleted = any(w.change_type == DELETED for w in writes)
        versions = {etag_of("u", user_id, v): v for v in range(1, update_count + 2)}
        wanted = [(int(CREATED), 1)] + [(int(UPDATED), v) for v in range(2, update_count + 2)]
        in_order = [(int(t), versions.get(etag, -1)) for t, _, etag in keys if t != DELETED]
        assert in_order == wanted, (user_id, in_order, wanted)
        assert (keys[-1][0] == DELETED) == deleted, (user_id, keys[-1])

    # Causality: a write that began after another's commit returned comes after it.
    position = {key: index for index, key in enumerate(sequence)}
    ordered = [w for w in history.committed if w.key is not None]
    for earlier in ordered:
        for later in ordered:
            if later.started > earlier.committed:
                assert earlier.key is not None and later.key is not None
                assert position[earlier.key] < position[later.key], (earlier, later)
