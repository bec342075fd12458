"""BatchCreateUsers, and the row checks it shares with ImportUsers.

request_id in a batch (API.md: ids are remembered per method): each row's request_id
is remembered under "BatchCreateUsers" with its body, exactly as CreateUser does for
one user. A retried batch returns the users its rows created (their current state),
a row whose id was used with another body is INVALID_ARGUMENT, and one whose user was
deleted since is NOT_FOUND; rows without a known id are created.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from service.domain import validation as check
from service.domain.errors import EmailTakenError, RequestIdReusedError, UserNotFoundError
from service.domain.models import NewUser, User, View, utc_now
from service.domain.ports import Remembered, RequestRecord, UnitOfWork, UnitOfWorkFactory
from service.domain.users import REQUEST_ID_TTL, UserInput, validate_new_user

METHOD = "BatchCreateUsers"


@dataclass(frozen=True, slots=True)
class RowInput:
    """One CreateUserRequest of a batch or an import, as the client sent it."""

    user: UserInput | None
    request_id: str = ""


def row_field(index: int, field: str) -> str:
    return f"requests[{index}].{field}"


def repeats(values: Iterable[str]) -> dict[int, int]:
    """Index of each non-empty value seen before -> index of its first occurrence."""
    first_seen: dict[str, int] = {}
    repeated: dict[int, int] = {}
    for index, value in enumerate(values):
        if not value:
            continue
        if value in first_seen:
            repeated[index] = first_seen[value]
        else:
            first_seen[value] = index
    return repeated


def check_replay(index: int, new: NewUser, record: RequestRecord | None) -> int | None:
    """The user a remembered request_id created, None if the id is new; raises on reuse."""
    if record is None or record.resource_id is None:
        return None
    if record.fingerprint != new.fingerprint():
        raise RequestIdReusedError(row_field(index, "request_id"))
    return record.resource_id


async def batch_create_users(new_uow: UnitOfWorkFactory, rows: Sequence[RowInput]) -> list[User]:
    news = _checked(rows)
    if not any(row.request_id for row in rows):
        async with new_uow.writing() as uow:
            new_ids = await _insert(uow, news, list(range(len(news))), utc_now())
            created = await _in_order(uow, new_ids)
            await uow.commit()
            return created
    # Two passes at most, as in CreateUser: a concurrent call that recorded the same
    # request_ids (or took the same emails) first has committed by the time ours fails,
    # so the second pass replays what it created.
    for second_pass in (False, True):
        async with new_uow.writing() as uow:
            now = utc_now()
            since = now - REQUEST_ID_TTL
            keys = [row.request_id for row in rows if row.request_id]
            records = await uow.requests.find_many(METHOD, keys, since)
            ids: list[int | None] = [
                check_replay(index, new, records.get(row.request_id))
                for index, (row, new) in enumerate(zip(rows, news, strict=True))
            ]
            fresh = [index for index, known in enumerate(ids) if known is None]
            try:
                created_ids = await _insert(uow, [news[i] for i in fresh], fresh, now)
            except EmailTakenError:
                if second_pass:
                    raise
                continue
            for index, user_id in zip(fresh, created_ids, strict=True):
                ids[index] = user_id
            remembered = [
                Remembered(rows[i].request_id, news[i].fingerprint(), created_ids[n])
                for n, i in enumerate(fresh)
                if rows[i].request_id
            ]
            if not await uow.requests.remember_many(METHOD, remembered, now, since):
                continue
            users = await _in_order(uow, [user_id for user_id in ids if user_id is not None])
            await uow.commit()
            return users
    raise RuntimeError("request_id records did not settle after a retry")


def _checked(rows: Sequence[RowInput]) -> list[NewUser]:
    found = check.Violations()
    check.check_count(found, "requests", len(rows), "request", check.BATCH_MAX)
    if len(rows) > check.BATCH_MAX:
        found.raise_if_any()
    news = [
        validate_new_user(found, f"requests[{index}].", row.user, row.request_id)
        for index, row in enumerate(rows)
    ]
    for index, first in repeats(row.request_id for row in rows).items():
        found.add(
            row_field(index, "request_id"),
            f"repeats the request_id of requests[{first}]; each request needs its own",
        )
    found.raise_if_any()
    for index, first in repeats(new.email for new in news).items():
        raise EmailTakenError(
            news[index].email, row_field(index, "user.email"), by=f"requests[{first}]"
        )
    return news


async def _insert(
    uow: UnitOfWork, news: Sequence[NewUser], indexes: Sequence[int], now: datetime
) -> list[int]:
    """Multi-row insert; a taken email is named by its row's index in the request."""
    try:
        return await uow.bulk.insert_many(news, now)
    except EmailTakenError as taken:
        index = next(i for i, new in zip(indexes, news, strict=True) if new.email == taken.email)
        raise EmailTakenError(taken.email, row_field(index, "user.email")) from taken


async def _in_order(uow: UnitOfWork, ids: Sequence[int]) -> list[User]:
    # API.md: Create results are the FULL view.
    found = await uow.users.get_many(list(dict.fromkeys(ids)), View.FULL)
    for user_id in ids:
        if user_id not in found:
            raise UserNotFoundError(user_id)
    return [found[user_id] for user_id in ids]
