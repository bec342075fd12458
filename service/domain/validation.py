"""Field rules of API.md; each check appends violations so every bad field is reported."""

from __future__ import annotations

import re
from collections.abc import Sequence

from service.domain.errors import FieldViolation, InvalidArgumentError

NAME_MAX = 50
EMAIL_MAX = 120
REQUEST_ID_MAX = 64
ADDRESSES_MAX = 100
BATCH_MAX = 1000
# Filters compare against stored emails, so nothing longer can match.
FILTER_MAX = EMAIL_MAX

# RFC 5322 dot-atoms of "atext" for the local part; the domain is two or more LDH
# labels. Deliberately ASCII: lower-casing and uniqueness must mean the same thing on
# every database. Regular expressions because ImportUsers checks a million of these.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)@{_LABEL}(?:\.{_LABEL})+")
# Unicode category Cc is exactly C0, DEL and C1.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_EMAIL_HINT = "must be an email address such as ana@example.com"


class Violations:
    """Collects violations; `raise_if_any` ends validation with all of them."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def extend(self, other: Violations) -> None:
        self.items.extend(other.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgumentError(self.items)


def check_id(found: Violations, field: str, value: int) -> None:
    # API.md: 0 is a missing id, a negative one is malformed.
    if value == 0:
        found.add(field, "is required")
    elif value < 0:
        found.add(field, f"must be a positive id, got {value}")


def check_name(found: Violations, field: str, value: str) -> str:
    if value == "":
        found.add(field, "is required")
    elif len(value) > NAME_MAX:
        found.add(field, f"must be at most {NAME_MAX} characters, got {len(value)}")
    elif _has_control(value):
        found.add(field, "must not contain NUL or other control characters")
    elif value.strip() == "":
        found.add(field, "must not be blank")
    return value


def check_email(found: Violations, field: str, value: str) -> str:
    """Returns the normalised (lower-cased) email; API.md returns emails lower-cased."""
    if value == "":
        found.add(field, "is required")
    elif "\x00" in value:
        found.add(field, "must not contain NUL characters")
    elif len(value) > EMAIL_MAX:
        found.add(field, f"must be at most {EMAIL_MAX} characters, got {len(value)}")
    elif not is_email(value):
        found.add(field, _EMAIL_HINT)
    return value.lower()


def check_request_id(found: Violations, field: str, value: str) -> None:
    if len(value) > REQUEST_ID_MAX:
        found.add(field, f"must be at most {REQUEST_ID_MAX} characters, got {len(value)}")
    elif _has_control(value) or value.strip() != value:
        found.add(field, "must not contain spaces or control characters")


def check_filter_text(found: Violations, field: str, value: str) -> None:
    """A list filter: optional, but bounded and printable (API.md: NUL is INVALID_ARGUMENT)."""
    if len(value) > FILTER_MAX:
        found.add(field, f"must be at most {FILTER_MAX} characters, got {len(value)}")
    elif _has_control(value):
        found.add(field, "must not contain NUL or other control characters")


def check_count(found: Violations, field: str, count: int, noun: str, limit: int) -> None:
    if count == 0:
        found.add(field, f"at least one {noun} is required")
    elif count > limit:
        found.add(field, f"at most {limit} {noun}s are allowed, got {count}")


def check_unique(found: Violations, field: str, values: Sequence[str], what: str) -> None:
    """Flags each repeat, naming the earlier index it repeats."""
    first_seen: dict[str, int] = {}
    for index, value in enumerate(values):
        if value == "":
            continue
        if value in first_seen:
            found.add(f"{field}[{index}]", f"repeats {what} of {field}[{first_seen[value]}]")
        else:
            first_seen[value] = index


def is_email(value: str) -> bool:
    match = _EMAIL.fullmatch(value)
    return match is not None and len(match.group("local")) <= 64


def _has_control(value: str) -> bool:
    return _CONTROL.search(value) is not None
