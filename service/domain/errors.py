"""Every failure a use case can report, as a small hierarchy.

    DomainError
    ├── InvalidArgumentError          one FieldViolation per bad field
    │   └── RequestIdReusedError      same request_id, different body
    ├── NotFoundError
    │   ├── UserNotFoundError
    │   └── AddressNotFoundError
    ├── AlreadyExistsError
    │   ├── EmailTakenError
    │   ├── AddressExistsError
    │   └── StagedRepeatError         an import row repeats an earlier one (internal)
    ├── StaleEtagError
    ├── FailedPreconditionError
    │   ├── UserHasAddressesError
    │   ├── TooManyAddressesError
    │   └── ResumeTokenExpiredError
    ├── ImportAbortedError            ImportUsers ended, nothing kept
    │   ├── ImportIdleError
    │   └── ImportExpiredError
    └── UnavailableError              cannot serve now; the client may retry
        └── DatabaseUnavailableError

Failures of the transport itself (credentials, malformed bytes, drain, overload) are
in api/errors.py. api/status.py maps each class to a gRPC code; a test checks none is
missing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str  # the request path, e.g. "user.email" or "requests[7].user.name"
    description: str


class DomainError(Exception):
    reason = "DOMAIN_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def metadata(self) -> dict[str, str]:
        return {}


class InvalidArgumentError(DomainError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = tuple(violations)
        shown = "; ".join(f"{v.field}: {v.description}" for v in self.violations[:5])
        more = len(self.violations) - 5
        if more > 0:
            shown += f"; and {more} more (see the BadRequest details)"
        super().__init__(f"invalid request: {shown}")

    @property
    def metadata(self) -> dict[str, str]:
        return {"fields": ",".join(dict.fromkeys(v.field for v in self.violations))}


class RequestIdReusedError(InvalidArgumentError):
    reason = "REQUEST_ID_REUSED"

    def __init__(self, field: str) -> None:
        super().__init__(
            [
                FieldViolation(
                    field,
                    "was already used with a different request body; "
                    "use a new request_id for a different user",
                )
            ]
        )


class NotFoundError(DomainError):
    resource_type = ""

    def __init__(self, resource_id: int, noun: str) -> None:
        super().__init__(f"{noun} {resource_id} does not exist")
        self.resource_id = resource_id

    @property
    def metadata(self) -> dict[str, str]:
        return {"id": str(self.resource_id)}


class UserNotFoundError(NotFoundError):
    reason = "USER_NOT_FOUND"
    resource_type = "users.v1.User"

    def __init__(self, user_id: int) -> None:
        super().__init__(user_id, "user")


class AddressNotFoundError(NotFoundError):
    reason = "ADDRESS_NOT_FOUND"
    resource_type = "users.v1.Address"

    def __init__(self, address_id: int) -> None:
        super().__init__(address_id, "address")


class AlreadyExistsError(DomainError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field

    @property
    def metadata(self) -> dict[str, str]:
        return {"field": self.field}


class EmailTakenError(AlreadyExistsError):
    reason = "EMAIL_TAKEN"

    def __init__(self, email: str, field: str = "user.email", by: str = "another user") -> None:
        super().__init__(f"{field}: the email {email} is already taken by {by}", field)
        self.email = email


class AddressExistsError(AlreadyExistsError):
    reason = "ADDRESS_EXISTS"

    def __init__(self, user_id: int, email: str, field: str = "address.email") -> None:
        super().__init__(f"{field}: user {user_id} already has the address {email}", field)
        self.user_id = user_id

    @property
    def metadata(self) -> dict[str, str]:
        return {"field": self.field, "user_id": str(self.user_id)}


class StagedRepeatError(AlreadyExistsError):
    """ImportsRepository.stage: a row repeats the email or request_id of a row the import
    staged before (nothing of the chunk stays once its transaction is rolled back). The
    import use case names the row and what it repeats; this never reaches a client."""

    reason = "IMPORT_ROW_REPEATED"

    def __init__(self) -> None:
        super().__init__("a row repeats an earlier row of this import", "requests")


class StaleEtagError(DomainError):
    reason = "ETAG_MISMATCH"

    def __init__(self, noun: str, resource_id: int) -> None:
        super().__init__(
            f"the etag does not match {noun} {resource_id}'s current etag: it changed since "
            "you read it; read it again and retry"
        )
        self.resource_id = resource_id

    @property
    def metadata(self) -> dict[str, str]:
        return {"id": str(self.resource_id)}


class FailedPreconditionError(DomainError):
    violation_type = ""
    subject = ""


class UserHasAddressesError(FailedPreconditionError):
    reason = "USER_HAS_ADDRESSES"
    violation_type = "ADDRESSES_EXIST"

    def __init__(self, user_id: int, count: int) -> None:
        plural = "address" if count == 1 else "addresses"
        super().__init__(
            f"user {user_id} still has {count} {plural}; delete them first, "
            "or set force to true to delete them with the user"
        )
        self.user_id = user_id
        self.count = count
        self.subject = f"users/{user_id}"

    @property
    def metadata(self) -> dict[str, str]:
        return {"id": str(self.user_id), "address_count": str(self.count)}


class TooManyAddressesError(FailedPreconditionError):
    reason = "TOO_MANY_ADDRESSES"
    violation_type = "ADDRESS_LIMIT"

    def __init__(self, user_id: int, limit: int) -> None:
        super().__init__(
            f"user {user_id} already has {limit} addresses, the most a user may have; "
            "delete one first"
        )
        self.user_id = user_id
        self.subject = f"users/{user_id}"

    @property
    def metadata(self) -> dict[str, str]:
        return {"id": str(self.user_id)}


class ImportAbortedError(DomainError):
    """An ImportUsers call ended without writing anything; the client retries all of it."""


class ImportIdleError(ImportAbortedError):
    reason = "IMPORT_IDLE_TIMEOUT"

    def __init__(self, idle_seconds: float) -> None:
        super().__init__(
            f"the import was aborted after {idle_seconds:g} s without a message from the "
            "client; nothing of it was kept: send the whole import again"
        )
        self.idle_seconds = idle_seconds

    @property
    def metadata(self) -> dict[str, str]:
        return {"idle_seconds": f"{self.idle_seconds:g}"}


class ImportExpiredError(ImportAbortedError):
    reason = "IMPORT_EXPIRED"

    def __init__(self) -> None:
        super().__init__(
            "the import's staged rows were discarded as abandoned before it finished; "
            "nothing of it was kept: send the whole import again"
        )


class ResumeTokenExpiredError(FailedPreconditionError):
    reason = "RESUME_TOKEN_EXPIRED"
    violation_type = "RESUME_TOKEN_EXPIRED"
    subject = "resume_token"

    def __init__(self) -> None:
        super().__init__(
            "resume_token is older than the change stream keeps changes (--change-retention): "
            "re-read the users with StreamUsers, then call WatchUsers without a token"
        )


class UnavailableError(DomainError):
    """The server cannot serve the call now; the same call may succeed when retried."""


class DatabaseUnavailableError(UnavailableError):
    reason = "DATABASE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__("the database is unavailable right now; retry shortly")
