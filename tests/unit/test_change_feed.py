"""ChangeFeed on an in-memory change log: one loop for every watcher, a bounded buffer,
catch-up from the log behind it, the domain filter, failures and expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from service.domain import changes
from service.domain.changes import ChangeFeed, Encoded, WatchInput
from service.domain.errors import DatabaseUnavailableError, ResumeTokenExpiredError
from service.domain.models import Change, ChangeType
from tests.unit.fake_change_log import FakeChangeLog, user_of

WAIT = 5.0


def encode(change: Change) -> bytes:
    return f"{change.position}:{change.type.name}:{change.user.id}".encode()


@pytest.fixture
async def log_and_feed() -> AsyncIterator[tuple[FakeChangeLog, ChangeFeed]]:
    log = FakeChangeLog()
    feed = ChangeFeed(log, encode, buffer=4)
    await feed.start()
    yield log, feed
    await feed.stop()


async def take(feed: ChangeFeed, after: int, count: int, domain: str = "") -> list[Encoded]:
    got: list[Encoded] = []
    async with asyncio.timeout(WAIT):
        async for change in feed.watch(after, domain):
            got.append(change)
            if len(got) == count:
                break
    return got


def write(log: FakeChangeLog, count: int, domain: str = "a.test", first_id: int = 1) -> None:
    for user_id in range(first_id, first_id + count):
        log.commit(ChangeType.CREATED, user_of(user_id, domain, 1))


async def test_watchers_from_now_see_later_changes_once_in_order(
    log_and_feed: tuple[FakeChangeLog, ChangeFeed],
) -> None:
    log, feed = log_and_feed
    write(log, 3)  # committed before the watch: not "from now"
    start = await feed.start_position(WatchInput(after=None))
    assert start == 3, "pending changes are numbered before 'now' is taken"
    watchers = [asyncio.create_task(take(feed, start, 5)) for _ in range(10)]
    await asyncio.sleep(0)
    write(log, 5, first_id=10)
    results = await asyncio.gather(*watchers)
    expected = [encode(c) for c in log.numbered[3:8]]
    assert all([c.payload for c in r] == expected for r in results)


async def test_a_watcher_behind_the_buffer_catches_up_from_the_log(
    log_and_feed: tuple[FakeChangeLog, ChangeFeed],
) -> None:
    log, feed = log_and_feed
    live = asyncio.create_task(take(feed, 0, 30))  # keeps the loop reading and buffering
    await asyncio.sleep(0)
    write(log, 30)
    await live
    reads_before = log.reads
    behind = await take(feed, 0, 30)  # the buffer holds only the newest few
    assert [c.position for c in behind] == list(range(1, 31))
    assert log.reads > reads_before, "it read the log, not only the buffer"
    assert len(feed._buffer) <= 2 * 4


async def test_the_domain_filter_skips_other_domains_both_ways(
    log_and_feed: tuple[FakeChangeLog, ChangeFeed],
) -> None:
    log, feed = log_and_feed
    watcher = asyncio.create_task(take(feed, 0, 3, domain="b.test"))
    await asyncio.sleep(0)
    for user_id in range(1, 13):
        log.commit(
            ChangeType.CREATED, user_of(user_id, "b.test" if user_id % 4 == 0 else "a.test", 1)
        )
    live = await watcher
    assert [c.payload for c in live] == [b"4:CREATED:4", b"8:CREATED:8", b"12:CREATED:12"]
    from_log = await take(feed, 0, 3, domain="b.test")  # behind the buffer: read filtered
    assert [c.payload for c in from_log] == [c.payload for c in live]


async def test_an_outage_ends_watches_and_the_feed_recovers(
    log_and_feed: tuple[FakeChangeLog, ChangeFeed],
) -> None:
    log, feed = log_and_feed
    watcher = asyncio.create_task(take(feed, 0, 1))
    await asyncio.sleep(0)
    log.down = True
    log.commit(ChangeType.CREATED, user_of(1, "a.test", 1))
    with pytest.raises(DatabaseUnavailableError):
        await watcher
    with pytest.raises(DatabaseUnavailableError):
        await feed.start_position(WatchInput(after=0))
    log.down = False
    async with asyncio.timeout(WAIT):
        while True:
            try:
                got = await take(feed, 0, 1)
                break
            except DatabaseUnavailableError:
                await asyncio.sleep(0.05)
    assert got[0].position == 1


async def test_a_token_older_than_retention_is_expired(
    log_and_feed: tuple[FakeChangeLog, ChangeFeed],
) -> None:
    log, feed = log_and_feed
    write(log, 6)
    await feed.start_position(WatchInput(after=None))
    log.age_everything(by=timedelta(days=8))
    assert await feed.purge_expired(changes.DEFAULT_RETENTION) == 6
    with pytest.raises(ResumeTokenExpiredError):
        await feed.start_position(WatchInput(after=2))
    assert await feed.start_position(WatchInput(after=6)) == 6


async def test_with_no_watcher_the_feed_numbers_but_reads_and_holds_nothing(
    log_and_feed: tuple[FakeChangeLog, ChangeFeed],
) -> None:
    log, feed = log_and_feed
    write(log, 50)
    async with asyncio.timeout(WAIT):
        while log.pending or log.last_position < 50:  # noqa: ASYNC110 - the loop numbers them
            await asyncio.sleep(0.01)
    assert feed._buffer == []
    assert log.reads == 0
    # A watcher that comes later is followed from the log's head at once.
    start = await feed.start_position(WatchInput(after=None))
    watcher = asyncio.create_task(take(feed, start, 1))
    await asyncio.sleep(0.05)
    write(log, 1, first_id=99)
    [change] = await watcher
    assert change.position == 51
