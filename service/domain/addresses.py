"""AddressService use cases: one async function each, owning its transaction.

Every write locks the owning user's row first (UserService's writes do too), so the
100-address cap and the user's etag stay right under concurrent calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.domain import listing
from service.domain import validation as check
from service.domain.errors import (
    AddressNotFoundError,
    StaleEtagError,
    TooManyAddressesError,
    UserNotFoundError,
)
from service.domain.models import Address, View, utc_now
from service.domain.ports import ReadingUnit, UnitOfWork, UnitOfWorkFactory
from service.domain.queries import PAGE_MAX, Cursor, Page, PageTokens

# API.md: paths naming output-only fields are ignored, never an error.
_OUTPUT_ONLY = frozenset({"id", "user_id", "create_time", "update_time", "etag"})


async def create_address(new_uow: UnitOfWorkFactory, user_id: int, email: str | None) -> Address:
    """`email` is None when the request carries no address at all."""
    found = check.Violations()
    check.check_id(found, "user_id", user_id)
    if email is None:
        found.add("address", "is required")
    else:
        email = check.check_email(found, "address.email", email)
    found.raise_if_any()
    assert email is not None
    async with new_uow.writing() as uow:
        if await uow.users.get_for_update(user_id) is None:
            raise UserNotFoundError(user_id)
        # Counted under the user's lock: two concurrent creates cannot both pass at 99.
        if await uow.users.count_addresses(user_id) >= check.ADDRESSES_MAX:
            raise TooManyAddressesError(user_id, check.ADDRESSES_MAX)
        address_id = await uow.addresses.insert(user_id, email, utc_now())
        created = await _get(uow, address_id)
        await uow.commit()
        return created


async def get_address(new_uow: UnitOfWorkFactory, address_id: int) -> Address:
    found = check.Violations()
    check.check_id(found, "id", address_id)
    found.raise_if_any()
    async with new_uow.reading() as uow:
        return await _get(uow, address_id)


async def update_address(
    new_uow: UnitOfWorkFactory,
    address_id: int,
    email: str,
    etag: str,
    mask_paths: Sequence[str],
) -> Address:
    found = check.Violations()
    check.check_id(found, "address.id", address_id)
    new_email = _email_change(found, email, mask_paths)
    found.raise_if_any()
    async with new_uow.writing() as uow:
        current = await _lock(uow, address_id)
        if etag and etag != current.etag:
            raise StaleEtagError("address", address_id)
        if new_email is None:
            return current
        await uow.addresses.update_email(address_id, current.user_id, new_email, utc_now())
        updated = await _get(uow, address_id)
        await uow.commit()
        return updated


async def delete_address(new_uow: UnitOfWorkFactory, address_id: int, etag: str) -> None:
    found = check.Violations()
    check.check_id(found, "id", address_id)
    found.raise_if_any()
    async with new_uow.writing() as uow:
        current = await _lock(uow, address_id)
        if etag and etag != current.etag:
            raise StaleEtagError("address", address_id)
        await uow.addresses.delete(address_id, current.user_id, utc_now())
        await uow.commit()


async def list_addresses(
    new_uow: UnitOfWorkFactory,
    tokens: PageTokens,
    user_id: int,
    page_size: int,
    page_token: str,
) -> Page[Address]:
    found = check.Violations()
    check.check_id(found, "user_id", user_id)
    limit = listing.check_page_size(found, "page_size", page_size, PAGE_MAX)
    scope = listing.addresses_scope(user_id)
    after = None
    if user_id > 0:  # the token is bound to the user, so only a valid one can check it
        after = listing.read_token(found, tokens, scope, page_token, key_type=int)
    found.raise_if_any()
    async with new_uow.reading(stale_ok=True) as uow:
        if not await uow.users.get_many([user_id], View.BASIC):
            raise UserNotFoundError(user_id)
        after_id = None if after is None else after.id
        rows = await uow.addresses.list_page(user_id, after_id, limit + 1)
    return listing.page_of(rows, limit, lambda a: Cursor(a.id, a.id), tokens, scope)


def _email_change(found: check.Violations, email: str, paths: Sequence[str]) -> str | None:
    """API.md mask rules: `email` or `*`; an empty mask means "email, if set"."""
    if not paths:
        wanted = email != ""
    else:
        wanted = False
        for path in paths:
            if path in ("email", "*"):
                wanted = True
            elif path not in _OUTPUT_ONLY:
                found.add("update_mask", f"unknown path {path[:60]!r}: the paths are email or *")
    return check.check_email(found, "address.email", email) if wanted else None


async def _lock(uow: UnitOfWork, address_id: int) -> Address:
    """The address's latest state, with its user's row locked (the lock order of all writes)."""
    seen = await uow.addresses.get(address_id)
    if seen is None or await uow.users.get_for_update(seen.user_id) is None:
        raise AddressNotFoundError(address_id)
    # Read again under the lock, as a locking read: it sees the latest committed row at any
    # isolation level, not a snapshot from before a write that held the lock meanwhile.
    current = await uow.addresses.get_for_update(address_id)
    if current is None:
        raise AddressNotFoundError(address_id)
    return current


async def _get(uow: ReadingUnit, address_id: int) -> Address:
    address = await uow.addresses.get(address_id)
    if address is None:
        raise AddressNotFoundError(address_id)
    return address
