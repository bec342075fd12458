"""The users, addresses and bulk repositories of tests/unit/fakes.py: what
service/db/users_store.py, addresses_store.py and bulk_store.py do, on dicts.

Each method starts with `unit.step(<its name>)`, which records the call and runs the
test's hooks, then works on the unit's pending writes. Errors are the ones the SQL
stores raise for the same broken constraint (service/db/errors.py CONSTRAINT_ERRORS).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from service.domain.errors import AddressExistsError, EmailTakenError, UserNotFoundError
from service.domain.models import Address, NewUser, User, UserChanges, View
from service.domain.queries import SortKey, UserFilter, UsersPageQuery
from service.domain.rows import AddressRow, RowBatch, UserRow
from tests.unit.fake_tables import Session, Writes

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros_of(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _owned(w: Writes, user_ids: set[int]) -> dict[int, list[Address]]:
    """Addresses of those users, by user, ordered by id."""
    owned: dict[int, list[Address]] = defaultdict(list)
    for address in sorted(w.addresses.values(), key=lambda a: a.id):
        if address.user_id in user_ids:
            owned[address.user_id].append(address)
    return owned


def _viewed(w: Writes, found: Sequence[User], view: View) -> list[User]:
    if view is View.BASIC:
        return list(found)
    owned = _owned(w, {user.id for user in found})
    return [replace(user, addresses=tuple(owned.get(user.id, ()))) for user in found]


def add_user(w: Writes, unit: Session, new: NewUser, now: datetime, taken: set[str]) -> int:
    """Inserts the user and its addresses; `taken` holds every stored email and grows."""
    if new.email in taken:
        raise EmailTakenError(new.email)
    user_id = unit.new_id("users")
    w.users.insert(user_id, User(user_id, new.name, new.email, now, now, 1))
    taken.add(new.email)
    for email in new.address_emails:
        address_id = unit.new_id("addresses")
        w.addresses.insert(address_id, Address(address_id, user_id, email, now, now, 1))
    return user_id


def stored_emails(w: Writes) -> set[str]:
    return {user.email for user in w.users.values()}


def _touch(w: Writes, user_id: int, now: datetime) -> None:
    # API.md: every address write changes its user's etag and update_time.
    user = w.users.get(user_id)
    if user is not None:
        w.users.update(user_id, replace(user, version=user.version + 1, update_time=now))


def _matches(user: User, user_filter: UserFilter, owned: dict[int, list[Address]]) -> bool:
    if user_filter.email and user.email != user_filter.email:
        return False
    if user_filter.email_domain and user.email.rpartition("@")[2] != user_filter.email_domain:
        return False
    text = user_filter.address_email_contains
    return not text or any(text in a.email for a in owned.get(user.id, ()))


def _filtered(w: Writes, user_filter: UserFilter) -> list[User]:
    users = w.users.values()
    owned = _owned(w, {u.id for u in users}) if user_filter.address_email_contains else {}
    return [user for user in users if _matches(user, user_filter, owned)]


class FakeUsers:
    def __init__(self, unit: Session) -> None:
        self._unit = unit

    async def insert(self, new: NewUser, now: datetime) -> int:
        w = await self._unit.step("users.insert", writes=True)
        return add_user(w, self._unit, new, now, stored_emails(w))

    async def create(self, new: NewUser, now: datetime) -> User:
        w = await self._unit.step("users.create", writes=True)
        user_id = add_user(w, self._unit, new, now, stored_emails(w))
        user = w.users.get(user_id)
        assert user is not None
        return _viewed(w, [user], View.FULL)[0]

    async def get_one(self, user_id: int, view: View) -> User | None:
        w = await self._unit.step("users.get_one")
        user = w.users.get(user_id)
        return None if user is None else _viewed(w, [user], view)[0]

    async def get_many(self, ids: Sequence[int], view: View) -> dict[int, User]:
        w = await self._unit.step("users.get_many")
        found = [user for user in (w.users.get(i) for i in ids) if user is not None]
        return {user.id: user for user in _viewed(w, found, view)}

    async def get_for_update(self, user_id: int) -> User | None:
        w = await self._unit.step("users.get_for_update")
        return w.users.get(user_id)

    async def update(self, user_id: int, changes: UserChanges, now: datetime) -> None:
        w = await self._unit.step("users.update", writes=True)
        user = w.users.get(user_id)
        if user is None:
            return
        email = user.email if changes.email is None else changes.email
        if any(other.email == email and other.id != user_id for other in w.users.values()):
            raise EmailTakenError(email)
        name = user.name if changes.name is None else changes.name
        bumped = replace(user, name=name, email=email, update_time=now, version=user.version + 1)
        w.users.update(user_id, bumped)

    async def count_addresses(self, user_id: int) -> int:
        w = await self._unit.step("users.count_addresses")
        return sum(1 for address in w.addresses.values() if address.user_id == user_id)

    async def delete(self, user_id: int) -> None:
        w = await self._unit.step("users.delete", writes=True)
        for address in w.addresses.values():
            if address.user_id == user_id:
                w.addresses.delete(address.id)
        w.users.delete(user_id)

    async def list_page(self, query: UsersPageQuery) -> Sequence[User]:
        w = await self._unit.step("users.list_page")
        ordering = query.ordering

        def key(user: User) -> _Key:
            return _sort_key(ordering.key_of(user), user.id)

        rows = sorted(_filtered(w, query.filter), key=key, reverse=ordering.descending)
        if query.after is not None:
            bound = _sort_key(query.after.key, query.after.id)
            if ordering.descending:
                rows = [user for user in rows if key(user) < bound]
            else:
                rows = [user for user in rows if key(user) > bound]
        return _viewed(w, rows[: query.limit], query.view)

    async def stream_rows(
        self, user_filter: UserFilter, after_id: int, limit: int, *, with_addresses: bool
    ) -> RowBatch:
        w = await self._unit.step("users.stream_rows")
        found = sorted((u for u in _filtered(w, user_filter) if u.id > after_id), key=_id)
        rows: list[UserRow] = [
            (u.id, u.name, u.email, micros_of(u.create_time), micros_of(u.update_time), u.version)
            for u in found[:limit]
        ]
        if not with_addresses or not rows:
            return RowBatch(rows)
        grouped: dict[int, list[AddressRow]] = defaultdict(list)
        for user_id, owned in _owned(w, {row[0] for row in rows}).items():
            grouped[user_id] = [
                (
                    a.id,
                    a.user_id,
                    a.email,
                    micros_of(a.create_time),
                    micros_of(a.update_time),
                    a.version,
                )
                for a in owned
            ]
        return RowBatch(rows, grouped)


def _id(user: User) -> int:
    return user.id


# A sort key with a place for each kind, so every key compares with its own kind.
_Key = tuple[str, datetime, int, int]


def _sort_key(value: SortKey, user_id: int) -> _Key:
    return (
        value if isinstance(value, str) else "",
        value if isinstance(value, datetime) else _EPOCH,
        value if isinstance(value, int) else 0,
        user_id,
    )


class FakeAddresses:
    def __init__(self, unit: Session) -> None:
        self._unit = unit

    async def get(self, address_id: int) -> Address | None:
        w = await self._unit.step("addresses.get")
        return w.addresses.get(address_id)

    async def get_for_update(self, address_id: int) -> Address | None:
        w = await self._unit.step("addresses.get_for_update")
        return w.addresses.get(address_id)

    async def insert(self, user_id: int, email: str, now: datetime) -> int:
        w = await self._unit.step("addresses.insert", writes=True)
        if w.users.get(user_id) is None:
            raise UserNotFoundError(user_id)  # fk_addresses_user_id
        if any(a.user_id == user_id and a.email == email for a in w.addresses.values()):
            raise AddressExistsError(user_id, email)
        address_id = self._unit.new_id("addresses")
        w.addresses.insert(address_id, Address(address_id, user_id, email, now, now, 1))
        _touch(w, user_id, now)
        return address_id

    async def update_email(self, address_id: int, user_id: int, email: str, now: datetime) -> None:
        w = await self._unit.step("addresses.update_email", writes=True)
        for other in w.addresses.values():
            if other.user_id == user_id and other.email == email and other.id != address_id:
                raise AddressExistsError(user_id, email)
        address = w.addresses.get(address_id)
        if address is not None:
            bumped = replace(address, email=email, update_time=now, version=address.version + 1)
            w.addresses.update(address_id, bumped)
        _touch(w, user_id, now)

    async def delete(self, address_id: int, user_id: int, now: datetime) -> None:
        w = await self._unit.step("addresses.delete", writes=True)
        w.addresses.delete(address_id)
        _touch(w, user_id, now)

    async def list_page(self, user_id: int, after_id: int | None, limit: int) -> Sequence[Address]:
        w = await self._unit.step("addresses.list_page")
        owned = _owned(w, {user_id}).get(user_id, [])
        return [a for a in owned if after_id is None or a.id > after_id][:limit]


class FakeBulkUsers:
    def __init__(self, unit: Session) -> None:
        self._unit = unit

    async def insert_many(self, news: Sequence[NewUser], now: datetime) -> list[int]:
        w = await self._unit.step("bulk.insert_many", writes=True)
        taken = stored_emails(w)
        seen: set[str] = set()
        # One statement: a taken email fails it before anything is written, naming the
        # first row whose email is stored.
        for new in news:
            if new.email in taken:
                raise EmailTakenError(new.email)
        for new in news:
            if new.email in seen:
                raise EmailTakenError(new.email)
            seen.add(new.email)
        return [add_user(w, self._unit, new, now, taken) for new in news]
