"""Page tokens without a server: round trips, tampering, scopes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.api.page_tokens import TOKEN_MAX, PageTokenCodec
from service.domain.queries import Cursor, PageTokenError, SortKey

CODEC = PageTokenCodec(b"test key")


@pytest.mark.parametrize(
    "key",
    [
        7,
        2**62,
        "",
        "Zoë 😀",
        "a" * 50,
        "😀" * 50,
        datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC) - timedelta(microseconds=1),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_cursors_round_trip_exactly(key: SortKey) -> None:
    token = CODEC.issue("scope", Cursor(key, 42))
    assert len(token) < TOKEN_MAX
    back = CODEC.read("scope", token)
    assert back == Cursor(key, 42)
    assert type(back.key) is type(key)


def test_non_utc_times_come_back_as_the_same_instant() -> None:
    local = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=5)))
    assert CODEC.read("s", CODEC.issue("s", Cursor(local, 1))).key == local


def test_another_scope_is_refused_with_its_own_message() -> None:
    token = CODEC.issue("ListUsers\x00id", Cursor(1, 1))
    with pytest.raises(PageTokenError, match="different request"):
        CODEC.read("ListUsers\x00name", token)


def test_another_key_is_refused() -> None:
    token = PageTokenCodec(b"other key").issue("scope", Cursor(1, 1))
    with pytest.raises(PageTokenError, match="not a page token"):
        CODEC.read("scope", token)


@pytest.mark.parametrize("token", ["", "a", "a" * (TOKEN_MAX + 1), "a+b/c=", "ü"])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(PageTokenError):
        CODEC.read("scope", token)


@pytest.mark.parametrize("name", ["n", "na", "nam", "name"])  # every base64 tail length
def test_every_single_character_edit_is_refused(name: str) -> None:
    token = CODEC.issue("scope", Cursor(name, 5))
    for index in range(len(token)):
        for replacement in "A_-z":
            if token[index] != replacement:
                edited = token[:index] + replacement + token[index + 1 :]
                with pytest.raises(PageTokenError):
                    CODEC.read("scope", edited)


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        PageTokenCodec(b"")
