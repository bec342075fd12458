"""WatchUsers across server processes (README: "How the change stream works"): every
process on one database streams every change, whoever wrote it; a token one process
issued resumes on another, after a SIGTERM drain too; changes past --change-retention
are forgotten and their tokens are FAILED_PRECONDITION.

Each server is a real `python -m service serve` process; every read has a deadline, so
a server that hangs fails the test instead of holding it up."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from users.v1 import resources_pb2, user_service_pb2

from tests.backends import fresh_database, selected_backends
from tests.process.server_process import ServerProcess, free_port
from tests.rpc import Failure, UserStub, fails, failure_of, fresh_email

Change = user_service_pb2.UserChange
CREATED, UPDATED, DELETED = Change.TYPE_CREATED, Change.TYPE_UPDATED, Change.TYPE_DELETED
# Every read and every call: a broken server fails the test within this, never hangs it.
WAIT_SECONDS = 10.0
# How long a watch must stay quiet to count as "nothing more".
QUIET_SECONDS = 0.7
# SIGTERM: open streams end at once; the process exits well within this.
STOP_SECONDS = 15.0
RETENTION = "2s"
# The purge runs every retention / 4 (at least 0.5 s): a 2 s old change goes within ~3 s.
PURGE_WAIT_SECONDS = 15.0

BACKENDS = pytest.mark.parametrize("backend", selected_backends())


def fresh_domain() -> str:
    return f"p{uuid.uuid4().hex[:10]}.example"


@contextmanager
def server(workdir: Path, database_url: str, *extra: str) -> Iterator[ServerProcess]:
    port = free_port()
    args = ("--port", str(port), "--database-url", database_url, *extra)
    with ServerProcess(workdir, args, port=port) as process:
        yield process


@asynccontextmanager
async def user_stub(process: ServerProcess) -> AsyncIterator[UserStub]:
    async with grpc.aio.insecure_channel(process.target) as channel:
        yield UserStub(channel)


class Watch:
    """A WatchUsers call read by a task of its own into a queue. Waiting for a change
    times out on the queue, never on the call: grpc.aio cancels the whole call when a
    read of it is cancelled, and "nothing more for now" must leave the watch on."""

    def __init__(
        self,
        call: grpc.aio.UnaryStreamCall[user_service_pb2.WatchUsersRequest, Change],
        start_token: str,
    ) -> None:
        self.call = call
        self.start_token = start_token  # the `resume-token` response header
        self._received: asyncio.Queue[Change | grpc.aio.AioRpcError | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read_all())

    async def _read_all(self) -> None:
        try:
            while True:
                message = await self.call.read()
                if not isinstance(message, Change):  # grpc.aio.EOF
                    self._received.put_nowait(None)
                    return
                self._received.put_nowait(message)
        except grpc.aio.AioRpcError as error:
            self._received.put_nowait(error)

    async def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def next(self, count: int) -> list[Change]:
        received: list[Change] = []
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while len(received) < count:
                    item = await self._received.get()
                    assert isinstance(item, Change), f"the watch ended ({item}) after {received}"
                    received.append(item)
        except TimeoutError:
            raise AssertionError(
                f"{len(received)} of {count} changes within {WAIT_SECONDS} s: {received}"
            ) from None
        return received

    async def nothing_more(self) -> None:
        try:
            async with asyncio.timeout(QUIET_SECONDS):
                item = await self._received.get()
        except TimeoutError:
            return
        raise AssertionError(f"expected nothing more, got: {item}")

    async def ends(self) -> Failure:
        """The status the stream ends with; it must not send another change first."""
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                item = await self._received.get()
        except TimeoutError:
            raise AssertionError(f"the stream did not end within {WAIT_SECONDS} s") from None
        assert isinstance(item, grpc.aio.AioRpcError), f"expected the end of the stream: {item}"
        return failure_of(item)


@asynccontextmanager
async def watching(users: UserStub, domain: str, resume_token: str = "") -> AsyncIterator[Watch]:
    call = users.WatchUsers(
        user_service_pb2.WatchUsersRequest(email_domain=domain, resume_token=resume_token)
    )
    try:
        # The headers come once the watch is on: what is written after them is seen.
        async with asyncio.timeout(WAIT_SECONDS):
            headers = dict(await call.initial_metadata())
        assert "resume-token" in headers, f"no resume-token header: {headers}"
    except BaseException:
        call.cancel()
        raise
    watch = Watch(call, str(headers["resume-token"]))
    try:
        yield watch
    finally:
        await watch.close()


async def create(users: UserStub, domain: str, name: str) -> resources_pb2.User:
    return await users.CreateUser(
        user_service_pb2.CreateUserRequest(
            user=resources_pb2.User(name=name, email=fresh_email(domain))
        ),
        timeout=WAIT_SECONDS,
    )


async def rename(users: UserStub, user: resources_pb2.User, name: str) -> resources_pb2.User:
    return await users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(id=user.id, name=name, etag=user.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
        timeout=WAIT_SECONDS,
    )


async def delete(users: UserStub, user: resources_pb2.User) -> resources_pb2.User:
    """Deletes the user; what its TYPE_DELETED change shows of it (id and email)."""
    await users.DeleteUser(user_service_pb2.DeleteUserRequest(id=user.id), timeout=WAIT_SECONDS)
    return resources_pb2.User(id=user.id, email=user.email)


Expected = list[tuple[int, resources_pb2.User]]


def shown(changes: list[Change]) -> Expected:
    return [(change.type, change.user) for change in changes]


async def lifecycle(users: UserStub, domain: str, name: str) -> Expected:
    """Creates, renames and deletes a user: the changes a watcher must see, in order."""
    created = await create(users, domain, name)
    renamed = await rename(users, created, f"{name} renamed")
    gone = await delete(users, renamed)
    return [(CREATED, created), (UPDATED, renamed), (DELETED, gone)]


@BACKENDS
async def test_a_watcher_sees_the_writes_of_another_process_on_the_database(
    tmp_path: Path, backend: str
) -> None:
    domain = fresh_domain()
    async with fresh_database(backend, tmp_path) as url:
        with server(tmp_path, url) as a, server(tmp_path, url) as b:
            async with (
                user_stub(a) as via_a,
                user_stub(b) as via_b,
                watching(via_a, domain) as on_a,
                watching(via_b, domain) as on_b,
            ):
                expected = await lifecycle(via_a, domain, "Through A")
                expected += await lifecycle(via_b, domain, "Through B")
                seen_on_b = await on_b.next(len(expected))
                seen_on_a = await on_a.next(len(expected))
                await on_b.nothing_more()
                await on_a.nothing_more()

    assert shown(seen_on_b) == expected, "B streams A's writes, then its own, in order"
    assert shown(seen_on_a) == expected, "A streams its own writes, then B's, in order"
    # One change log: both processes send the same changes, tokens and commit times alike.
    assert seen_on_a == seen_on_b
    assert len({change.resume_token for change in seen_on_a}) == len(expected)


@BACKENDS
async def test_a_stream_drained_by_sigterm_resumes_on_another_process(
    tmp_path: Path, backend: str
) -> None:
    busy, quiet = fresh_domain(), fresh_domain()
    async with fresh_database(backend, tmp_path) as url:
        with server(tmp_path, url) as first:
            async with (
                user_stub(first) as users,
                watching(users, busy) as watch,
                watching(users, quiet) as idle,
            ):
                made = [await create(users, busy, f"Before {i}") for i in range(3)]
                received = await watch.next(len(made))
                await watch.nothing_more()
                await idle.nothing_more()
                code = await asyncio.to_thread(first.terminate, STOP_SECONDS)
                drained = await watch.ends()
                idle_drained = await idle.ends()
            assert code == 0, first.stderr
            assert "Traceback" not in first.stderr, first.stderr
        assert [c.user for c in received] == made

        for failure, token in (
            (drained, received[-1].resume_token),
            (idle_drained, idle.start_token),  # no change received: where it started
        ):
            assert failure.code == grpc.StatusCode.UNAVAILABLE, failure
            assert failure.info is not None, failure
            assert failure.info.reason == "SERVER_DRAINING", failure
            assert dict(failure.info.metadata) == {"resume_token": token}, failure
            assert failure.retry is not None, "UNAVAILABLE says when to retry"

        with server(tmp_path, url) as second:
            async with user_stub(second) as users:
                # Written while no watcher is connected anywhere.
                meanwhile = [await create(users, busy, f"Meanwhile {i}") for i in range(2)]
                renamed = await rename(users, made[0], "Before 0 renamed")
                gone = await delete(users, made[1])
                elsewhere = await create(users, quiet, "Quiet")
                expected = [(CREATED, u) for u in meanwhile] + [(UPDATED, renamed), (DELETED, gone)]

                async with (
                    watching(users, busy, received[-1].resume_token) as resumed,
                    watching(users, quiet, idle.start_token) as idle_resumed,
                ):
                    assert resumed.start_token == received[-1].resume_token
                    assert idle_resumed.start_token == idle.start_token
                    caught_up = await resumed.next(len(expected))
                    [quiet_change] = await idle_resumed.next(1)
                    await resumed.nothing_more()
                    await idle_resumed.nothing_more()
                    # Caught up, the resumed stream goes on live.
                    later = await create(users, busy, "Later")
                    [live] = await resumed.next(1)
                    await resumed.nothing_more()

    assert shown(caught_up) == expected, "exactly what was written meanwhile, once, in order"
    assert not {c.resume_token for c in caught_up} & {c.resume_token for c in received}
    assert shown([quiet_change]) == [(CREATED, elsewhere)]
    assert shown([live]) == [(CREATED, later)]


async def expired_failure(users: UserStub, domain: str, token: str) -> Failure:
    """Resumes with `token` until the change after it is purged and the call fails."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PURGE_WAIT_SECONDS
    while True:
        call = users.WatchUsers(
            user_service_pb2.WatchUsersRequest(email_domain=domain, resume_token=token)
        )
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                message = await call.read()
        except grpc.aio.AioRpcError as error:
            return failure_of(error)
        finally:
            call.cancel()
        # Still kept: the resumed stream starts with the change after the token.
        assert isinstance(message, Change), "the watch ended without a status"
        assert loop.time() < deadline, f"not purged within {PURGE_WAIT_SECONDS} s"
        await asyncio.sleep(0.25)


@BACKENDS
async def test_a_token_older_than_the_retention_is_expired(tmp_path: Path, backend: str) -> None:
    domain = fresh_domain()
    async with fresh_database(backend, tmp_path) as url:
        with server(tmp_path, url, "--change-retention", RETENTION) as process:
            async with user_stub(process) as users:
                async with watching(users, domain) as watch:
                    old = watch.start_token
                    user = await create(users, domain, "Short-lived")
                    [change] = await watch.next(1)
                assert change.user == user

                failure = await expired_failure(users, domain, old)
                assert failure.code == grpc.StatusCode.FAILED_PRECONDITION, failure
                assert failure.info is not None, failure
                assert failure.info.reason == "RESUME_TOKEN_EXPIRED", failure
                assert failure.precondition is not None, "a PreconditionFailure detail"
                [violation] = failure.precondition.violations
                assert (violation.type, violation.subject) == (
                    "RESUME_TOKEN_EXPIRED",
                    "resume_token",
                ), failure

                # Expired is for good: the same token fails the same way again.
                again = await fails(
                    users.WatchUsers(
                        user_service_pb2.WatchUsersRequest(email_domain=domain, resume_token=old),
                        timeout=WAIT_SECONDS,
                    ).read()
                )
                assert again.code == grpc.StatusCode.FAILED_PRECONDITION, again

                # Watching from now still works.
                async with watching(users, domain) as fresh:
                    later = await create(users, domain, "Later")
                    [live] = await fresh.next(1)
                    await fresh.nothing_more()
                assert shown([live]) == [(CREATED, later)]


SLOW_READER_CHANGES = 2_000  # far more than a flow-control window of 64 KiB holds
# Without BDP probing the client's window stays at its initial 64 KiB.
SMALL_WINDOW = (("grpc.http2.bdp_probe", 0),)


async def logged(process: ServerProcess, text: str) -> None:
    async with asyncio.timeout(WAIT_SECONDS):
        while text not in process.stderr:  # noqa: ASYNC110 - another process writes it
            await asyncio.sleep(0.05)


@BACKENDS
async def test_a_slow_reader_drained_by_sigterm_resumes_after_its_last_change(
    tmp_path: Path, backend: str
) -> None:
    """SIGTERM while the server waits to write the next change to a client that does not
    read (its flow-control window is full): the stream still ends with the resume token
    of the last change the client gets, and resuming with it misses nothing."""
    domain = fresh_domain()
    async with fresh_database(backend, tmp_path) as url:
        with server(tmp_path, url) as first:
            async with grpc.aio.insecure_channel(first.target, options=SMALL_WINDOW) as channel:
                users = UserStub(channel)
                call = users.WatchUsers(user_service_pb2.WatchUsersRequest(email_domain=domain))
                async with asyncio.timeout(WAIT_SECONDS):
                    await call.initial_metadata()
                made: list[resources_pb2.User] = []
                for _ in range(SLOW_READER_CHANGES // 1_000):
                    batch = await users.BatchCreateUsers(
                        user_service_pb2.BatchCreateUsersRequest(
                            requests=[
                                user_service_pb2.CreateUserRequest(
                                    user=resources_pb2.User(name="Slow", email=fresh_email(domain))
                                )
                                for _ in range(1_000)
                            ]
                        ),
                        timeout=WAIT_SECONDS * 3,
                    )
                    made += batch.users
                # Not reading: the server fills the window, then waits in its write.
                await asyncio.sleep(1.0)
                stopping = asyncio.create_task(asyncio.to_thread(first.terminate, STOP_SECONDS))
                await logged(first, "stopping: draining")
                await asyncio.sleep(0.5)  # the drain has begun: now read everything
                received: list[Change] = []
                try:
                    async with asyncio.timeout(WAIT_SECONDS):
                        while isinstance(message := await call.read(), Change):
                            received.append(message)
                    raise AssertionError(f"the stream ended without a status: {len(received)}")
                except grpc.aio.AioRpcError as error:
                    drained = failure_of(error)
                code = await stopping
            assert code == 0, first.stderr
        assert 0 < len(received) < len(made), "the drain came while changes were pending"
        assert [c.user.id for c in received] == [u.id for u in made[: len(received)]]
        assert drained.code == grpc.StatusCode.UNAVAILABLE, drained
        assert drained.info is not None and drained.info.reason == "SERVER_DRAINING", drained
        assert dict(drained.info.metadata) == {"resume_token": received[-1].resume_token}, (
            f"after {len(received)} changes: {drained}"
        )

        with server(tmp_path, url) as second:
            async with (
                user_stub(second) as users,
                watching(users, domain, received[-1].resume_token) as resumed,
            ):
                rest = await resumed.next(len(made) - len(received))
                await resumed.nothing_more()
    assert [c.user.id for c in rest] == [u.id for u in made[len(received) :]]
