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


def etag_of(kind: str, resource_id: int, version: int) -> str:
    # Opaque on purpose (API.md): clients compare etags, never parse them.
    raw = f"{kind}:{resource_id}:{version}".encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)
