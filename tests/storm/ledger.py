"""What a storm client knows of its writes: for every user and address it touched, the
states the database may hold now, given which calls returned OK, which failed for sure
and which may or may not have landed (deadline, cancel, lost connection).

Each entity belongs to one client task, so the calls on it never overlap: an OK write
narrows its states to one, a definite failure changes nothing, an uncertain write adds
its state to the possible ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

# Outcomes that say the write did not happen (the server refused it before writing).
DEFINITE_FAILURES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
    }
)
ABSENT = ""  # the state of a user or an address that is not stored


@dataclass
class Entity:
    """One user (state: its name) or one address (state: its email); ABSENT if not stored."""

    possible: set[str] = field(default_factory=lambda: {ABSENT})

    def wrote(self, state: str, code: grpc.StatusCode) -> None:
        if code == grpc.StatusCode.OK:
            self.possible = {state}
        elif code not in DEFINITE_FAILURES:
            self.possible.add(state)

    @property
    def surely_absent(self) -> bool:
        return self.possible == {ABSENT}


@dataclass
class UserEntry:
    email: str
    user: Entity = field(default_factory=Entity)
    # address key (the email it was created with) -> its states (emails)
    addresses: dict[str, Entity] = field(default_factory=dict)


@dataclass
class Ledger:
    users: dict[str, UserEntry] = field(default_factory=dict)  # by email (never updated)
    # emails written in one all-or-nothing call (BatchCreateUsers, ImportUsers)
    groups: list[list[str]] = field(default_factory=list)

    def user(self, email: str) -> UserEntry:
        return self.users.setdefault(email, UserEntry(email))

    def to_json(self) -> dict[str, object]:
        return {
            "users": {
                email: {
                    "possible": sorted(entry.user.possible),
                    "addresses": {k: sorted(a.possible) for k, a in entry.addresses.items()},
                }
                for email, entry in self.users.items()
            },
            "groups": self.groups,
        }


def check(
    ledgers: list[dict[str, object]],
    stored_users: dict[str, str],
    stored_addresses: dict[str, list[str]],
    allowed_unknown: tuple[str, ...],
) -> list[str]:
    """Problems found comparing the clients' ledgers with what is stored.

    `stored_users`: email -> name; `stored_addresses`: user email -> address emails;
    `allowed_unknown`: email suffixes of writes whose outcome no ledger records (clients
    killed mid-call), allowed to exist or not.
    """
    problems: list[str] = []
    known: set[str] = set()
    for ledger in ledgers:
        users = ledger["users"]
        assert isinstance(users, dict)
        for email, entry in users.items():
            known.add(email)
            possible = set(entry["possible"])
            stored = stored_users.get(email, ABSENT)
            if stored not in possible:
                problems.append(f"user {email}: stored {stored!r}, possible {sorted(possible)}")
            problems += _address_problems(
                email, entry["addresses"], stored_addresses.get(email, [])
            )
        groups = ledger["groups"]
        assert isinstance(groups, list)
        for group in groups:
            present = [email in stored_users for email in group]
            if any(present) and not all(present):
                problems.append(f"an all-or-nothing write half landed: {group}")
    for email in stored_users:
        if email not in known and not email.endswith(allowed_unknown):
            problems.append(f"user {email} is stored but no client wrote it")
    return problems


def _address_problems(
    user_email: str, addresses: dict[str, list[str]], stored: list[str]
) -> list[str]:
    problems: list[str] = []
    owner = {state: key for key, states in addresses.items() for state in states if state}
    matched: set[str] = set()
    for email in stored:
        key = owner.get(email)
        if key is None or key in matched:
            problems.append(f"user {user_email}: address {email} stored but never written")
        else:
            matched.add(key)
    for key, states in addresses.items():
        if key not in matched and ABSENT not in states:
            problems.append(f"user {user_email}: address {key} ({states}) is missing")
    return problems
