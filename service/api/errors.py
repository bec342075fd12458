"""Failures of the transport, not of a use case: the call layer and the servicers raise
them, api/status.py maps them with the domain's own.

    DomainError (domain/errors.py)
    ├── InvalidArgumentError
    │   └── MalformedRequestError     bytes that are not the request message
    ├── UnavailableError
    │   ├── ServerDrainingError       this process is stopping
    │   ├── StreamBrokenOffError      a WatchUsers stream cannot go on (a resume token said)
    │   └── OverloadedError           calls in flight at --max-in-flight
    ├── AuthenticationError           no or unknown credential (when auth is on)
    └── PermissionDeniedError         a read-only credential tries a write
"""

from __future__ import annotations

from service.domain.errors import (
    DomainError,
    FieldViolation,
    InvalidArgumentError,
    UnavailableError,
)


class MalformedRequestError(InvalidArgumentError):
    reason = "MALFORMED_REQUEST"

    def __init__(self, message_type: str) -> None:
        super().__init__(
            [FieldViolation("request", f"the bytes received are not a valid {message_type}")]
        )
        self.message_type = message_type

    @property
    def metadata(self) -> dict[str, str]:
        return {"fields": "request", "message_type": self.message_type}


class ServerDrainingError(UnavailableError):
    reason = "SERVER_DRAINING"

    def __init__(self, resume: dict[str, str] | None = None) -> None:
        """`resume`: where the client resumes the stream that ends (ErrorInfo metadata)."""
        super().__init__(
            "this server is shutting down; retry, and a stream resumes where it broke off "
            "(StreamUsers: after_id = the last id received; WatchUsers: the last resume_token)"
        )
        self.resume = resume or {}

    @property
    def metadata(self) -> dict[str, str]:
        return self.resume


class StreamBrokenOffError(UnavailableError):
    """A server stream ends because of `cause` (the database went away, say); the
    metadata says where to resume."""

    reason = "STREAM_BROKEN_OFF"

    def __init__(self, cause: UnavailableError, resume: dict[str, str]) -> None:
        super().__init__(f"{cause.message}; resume with the resume_token in this error's details")
        self.resume = resume

    @property
    def metadata(self) -> dict[str, str]:
        return self.resume


class OverloadedError(UnavailableError):
    reason = "OVERLOADED"

    def __init__(self) -> None:
        super().__init__(
            "this server has as many calls in flight as it can finish in time; retry after "
            "the RetryInfo delay, or on another replica"
        )


class AuthenticationError(DomainError):
    reason = "UNAUTHENTICATED"

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"{problem}; send the metadata 'authorization: Bearer <token>' with a valid token"
        )


class PermissionDeniedError(DomainError):
    reason = "PERMISSION_DENIED"

    def __init__(self, method: str) -> None:
        super().__init__(f"{method} writes, and this token may only read; use a write token")
        self.method = method

    @property
    def metadata(self) -> dict[str, str]:
        return {"method": self.method}
