"""ImportUsers' row rules: what a chunk of rows must satisfy on its own, against the rows
staged before it and against what is stored; imports.py runs the stream around them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.domain import validation as check
from service.domain.bulk import RowInput, check_replay, repeats, row_field
from service.domain.errors import (
    DomainError,
    EmailTakenError,
    FieldViolation,
    InvalidArgumentError,
    RequestIdReusedError,
    UserNotFoundError,
)
from service.domain.models import NewUser, View, utc_now
from service.domain.ports import (
    ImportClashes,
    ReadingUnit,
    StagedClash,
    StagedUser,
)
from service.domain.users import REQUEST_ID_TTL, validate_new_user

METHOD = "ImportUsers"


async def sorted_rows(
    uow: ReadingUnit, chunk: CheckedChunk, clashes: ImportClashes
) -> tuple[list[StagedUser], int]:
    """The rows to stage and how many were replayed; raises at the first bad row."""
    news, keys, start = chunk.news, chunk.keys, chunk.start
    if not news:
        return [], 0
    now = utc_now()
    present = chunk.request_ids
    earlier_emails = repeats(chunk.emails)
    if not (present or earlier_emails or clashes.staged_emails or clashes.stored_emails):
        # Most chunks: no request_id and no email taken, so every row is staged as it is.
        return [StagedUser(start + offset, new, "") for offset, new in enumerate(news)], 0
    records = await uow.requests.find_many(METHOD, present, now - REQUEST_ID_TTL)
    remembered = {records[key].resource_id for key in present if key in records}
    replays = [i for i in remembered if i is not None]
    # Asked only when there are any: a round trip saved per chunk of a first attempt.
    stored = await uow.users.get_many(replays, View.BASIC) if replays else {}
    earlier_keys = repeats(keys)
    staged: list[StagedUser] = []
    replayed = 0
    for offset, (new, key) in enumerate(zip(news, keys, strict=True)):
        index = start + offset
        if offset in earlier_keys or key in clashes.staged_request_ids:
            earlier = earlier_keys.get(offset)
            raise _repeated_request_id(index, None if earlier is None else start + earlier)
        user_id = check_replay(index, new, records.get(key))
        if user_id is not None:
            if user_id not in stored:
                raise UserNotFoundError(user_id)  # API.md: a retry after a delete
            replayed += 1
            continue
        earlier = earlier_emails.get(offset)
        _check_email(index, new, None if earlier is None else start + earlier, clashes)
        staged.append(StagedUser(index, new, key))
    return staged, replayed


@dataclass(frozen=True, slots=True)
class CheckedChunk:
    """A chunk's rows as far as they can be checked without the database."""

    start: int  # stream position of its first row
    news: list[NewUser]  # normalised, up to its first invalid row
    keys: list[str]  # their request_ids
    invalid: InvalidArgumentError | None  # the first invalid row's violations

    @property
    def emails(self) -> list[str]:
        return [new.email for new in self.news]

    @property
    def request_ids(self) -> list[str]:
        return [key for key in self.keys if key]


def checked_chunk(chunk: Sequence[RowInput], start: int) -> CheckedChunk:
    found = check.Violations()  # one for all: checking stops at the first violation
    news: list[NewUser] = []
    for offset, row in enumerate(chunk):
        new = validate_new_user(found, f"requests[{start + offset}].", row.user, row.request_id)
        if found.items:
            keys = [row.request_id for row in chunk[:offset]]
            return CheckedChunk(start, news, keys, InvalidArgumentError(found.items))
        news.append(new)
    return CheckedChunk(start, news, [row.request_id for row in chunk], None)


def _check_email(index: int, new: NewUser, earlier: int | None, clashes: ImportClashes) -> None:
    field = row_field(index, "user.email")
    if earlier is not None:
        raise EmailTakenError(new.email, field, by=f"requests[{earlier}] of this import")
    if new.email in clashes.staged_emails:
        raise EmailTakenError(new.email, field, by="an earlier row of this import")
    if new.email in clashes.stored_emails:
        raise EmailTakenError(new.email, field)


def _repeated_request_id(index: int, earlier: int | None) -> InvalidArgumentError:
    which = "an earlier row of this import" if earlier is None else f"requests[{earlier}]"
    return InvalidArgumentError(
        [
            FieldViolation(
                row_field(index, "request_id"),
                f"repeats the request_id of {which}; each row needs its own",
            )
        ]
    )


def clash_error(clash: StagedClash) -> DomainError:
    # Something stored since the row was staged took its email or its request_id.
    if clash.request_id:
        return RequestIdReusedError(row_field(clash.stream_index, "request_id"))
    return EmailTakenError(clash.email, row_field(clash.stream_index, "user.email"))
