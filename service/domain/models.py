"""Plain values the use cases work with: users, addresses, views."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime


class View(enum.Enum):
    BASIC = "basic"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class Address:
    id: int
    user_id: int
    email: str
    create_time: datetime
    update_time: datetime
    version: int

    @property
    def etag(self) -> str:
        return etag_of("a", self.id, self.version)


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    email: str
    create_time: datetime
    update_time: datetime
    version: int
    # None in the BASIC view: "not loaded" differs from "has none".
    addresses: tuple[Address, ...] | None = None

    @property
    def etag(self) -> str:
        return etag_of("u", self.id, self.version)


@dataclass(frozen=True, slots=True)
class NewUser:
    """A validated, normalised CreateUser body."""

    name: str
    email: str
    address_emails: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        """Hash of the body, so a retried request_id can be told from a reused one."""
        digest = hashlib.sha256()
        for part in (self.name, self.email, *self.address_emails):
            digest.update(part.encode("utf-8"))
            digest.update(b"\x00")  # NUL never occurs in a valid value
        return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class UserChanges:
    """The fields an UpdateUser writes; None leaves a field as it is."""

    name: str | None = None
    email: str | None = None

    def is_empty(self) -> bool:
        return self.name is None and self.email is None


# Odd multipliers, one per kind of resource (any odd number is a bijection mod 2**96).
_ETAG_MIX = {"u": 0x9E3779B97F4A7C15F39CC061, "a": 0xC2B2AE3D27D4EB4F165667B1}
_ETAG_BITS = (1 << 96) - 1


def etag_of(kind: str, resource_id: int, version: int) -> str:
    """Opaque on purpose (API.md): clients compare etags, never parse them.

    (id, version) packed into 96 bits and scrambled by an odd multiplier: distinct for
    every distinct version of a resource (a bijection, so no hash collisions), and
    cheaper than a hash, which counts on StreamUsers' million rows.
    """
    return "%024x" % (((resource_id << 32 | version) * _ETAG_MIX[kind]) & _ETAG_BITS)


def utc_now() -> datetime:
    return datetime.now(UTC)


class ChangeType(enum.IntEnum):
    """UserChange.Type's numbers."""

    CREATED = 1
    UPDATED = 2
    DELETED = 3


@dataclass(frozen=True, slots=True)
class Change:
    position: int
    type: ChangeType
    user: User  # after the change; for a delete, the user as it was
    email_domain: str
    commit_time: datetime
