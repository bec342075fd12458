"""UserService use cases: one async function each, owning its transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from service.domain import validation as check
from service.domain.errors import (
    RequestIdReusedError,
    StaleEtagError,
    UserHasAddressesError,
    UserNotFoundError,
)
from service.domain.models import NewUser, User, UserChanges, View, utc_now
from service.domain.ports import UnitOfWork, UnitOfWorkFactory

# API.md: request ids are remembered per method for at least 24 hours.
REQUEST_ID_TTL = timedelta(hours=24)
_UPDATABLE = ("name", "email")
# API.md: paths naming output-only fields are ignored, never an error.
_OUTPUT_ONLY = frozenset({"id", "create_time", "update_time", "etag", "addresses"})


@dataclass(frozen=True, slots=True)
class UserInput:
    """A User as a client sent it, before validation."""

    name: str
    email: str
    address_emails: Sequence[str] = ()


def validate_new_user(
    found: check.Violations, prefix: str, user: UserInput | None, request_id: str
) -> NewUser:
    """Checks a CreateUserRequest (fields under `prefix`) and returns it normalised."""
    if user is None:
        found.add(f"{prefix}user", "is required")
        return NewUser(name="", email="")
    name = check.check_name(found, f"{prefix}user.name", user.name)
    email = check.check_email(found, f"{prefix}user.email", user.email)
    emails = [
        check.check_email(found, f"{prefix}user.addresses[{i}].email", raw)
        for i, raw in enumerate(user.address_emails)
    ]
    if len(emails) > check.ADDRESSES_MAX:
        found.add(
            f"{prefix}user.addresses",
            f"at most {check.ADDRESSES_MAX} addresses are allowed, got {len(emails)}",
        )
    check.check_unique(found, f"{prefix}user.addresses", emails, "the email")
    check.check_request_id(found, f"{prefix}request_id", request_id)
    return NewUser(name=name, email=email, address_emails=tuple(emails))


async def create_user(
    new_uow: UnitOfWorkFactory, user: UserInput | None, request_id: str = ""
) -> User:
    found = check.Violations()
    new = validate_new_user(found, "", user, request_id)
    found.raise_if_any()
    if not request_id:
        return await new_uow.create_user(new, utc_now())
    # Two passes at most: a concurrent call with the same request_id that wins the
    # claim has committed by the time ours fails, so the second pass finds it.
    for _ in range(2):
        async with new_uow.writing() as uow:
            now = utc_now()
            since = now - REQUEST_ID_TTL
            record = await uow.requests.find("CreateUser", request_id, since)
            if record is not None:
                if record.fingerprint != new.fingerprint():
                    raise RequestIdReusedError("request_id")
                if record.resource_id is None:
                    continue
                # API.md: a retry returns the current state, NOT_FOUND if deleted since.
                return await _get_full(uow, record.resource_id)
            if not await uow.requests.claim(
                "CreateUser", request_id, new.fingerprint(), now, since
            ):
                continue
            created = await uow.users.create(new, now)
            await uow.requests.attach("CreateUser", request_id, created.id)
            await uow.commit()
            return created
    raise RuntimeError("request_id claim did not settle after a retry")


async def get_user(new_uow: UnitOfWorkFactory, user_id: int, view: View) -> User:
    found = check.Violations()
    check.check_id(found, "id", user_id)
    found.raise_if_any()
    user = await new_uow.read_user(user_id, view)
    if user is None:
        raise UserNotFoundError(user_id)
    return user


async def batch_get_users(new_uow: UnitOfWorkFactory, ids: Sequence[int], view: View) -> list[User]:
    found = check.Violations()
    check.check_count(found, "ids", len(ids), "id", check.BATCH_MAX)
    if len(ids) <= check.BATCH_MAX:
        for index, user_id in enumerate(ids):
            check.check_id(found, f"ids[{index}]", user_id)
    found.raise_if_any()
    async with new_uow.reading() as uow:
        users = await uow.users.get_many(list(dict.fromkeys(ids)), view)
    for user_id in ids:
        if user_id not in users:
            raise UserNotFoundError(user_id)
    return [users[user_id] for user_id in ids]


async def update_user(
    new_uow: UnitOfWorkFactory,
    user_id: int,
    user: UserInput,
    etag: str,
    mask_paths: Sequence[str],
) -> User:
    found = check.Violations()
    check.check_id(found, "user.id", user_id)
    changes = _changes_from(found, user, mask_paths)
    found.raise_if_any()
    async with new_uow.writing() as uow:
        current = await uow.users.get_for_update(user_id)
        if current is None:
            raise UserNotFoundError(user_id)
        if etag and etag != current.etag:
            raise StaleEtagError("user", user_id)
        if not changes.is_empty():
            await uow.users.update(user_id, changes, utc_now())
        updated = await _get_full(uow, user_id)
        await uow.commit()
        return updated


async def delete_user(new_uow: UnitOfWorkFactory, user_id: int, etag: str, force: bool) -> None:
    found = check.Violations()
    check.check_id(found, "id", user_id)
    found.raise_if_any()
    async with new_uow.writing() as uow:
        current = await uow.users.get_for_update(user_id)
        if current is None:
            raise UserNotFoundError(user_id)
        if etag and etag != current.etag:
            raise StaleEtagError("user", user_id)
        if not force:
            count = await uow.users.count_addresses(user_id)
            if count:
                raise UserHasAddressesError(user_id, count)
        await uow.users.delete(user_id)
        await uow.commit()


def _changes_from(found: check.Violations, user: UserInput, paths: Sequence[str]) -> UserChanges:
    """Applies API.md's mask rules: `*` is both fields; an empty mask is every set field."""
    if not paths:
        wanted = {field for field in _UPDATABLE if getattr(user, field)}
    else:
        wanted = set()
        for path in paths:
            if path == "*":
                wanted.update(_UPDATABLE)
            elif path in _UPDATABLE:
                wanted.add(path)
            elif path not in _OUTPUT_ONLY:
                found.add(
                    "update_mask",
                    f"unknown path {path[:60]!r}: the paths are name, email or *",
                )
    name = check.check_name(found, "user.name", user.name) if "name" in wanted else None
    email = check.check_email(found, "user.email", user.email) if "email" in wanted else None
    return UserChanges(name=name, email=email)


async def _get_full(uow: UnitOfWork, user_id: int) -> User:
    users = await uow.users.get_many([user_id], View.FULL)
    if user_id not in users:
        raise UserNotFoundError(user_id)
    return users[user_id]
