"""A failed call as a typed exception, decoded from the status's google.rpc details.

    UsersError                          code, message, reason, metadata, field_violations
    ├── InvalidArgumentError            INVALID_ARGUMENT
    │   ├── RequestIdReusedError        REQUEST_ID_REUSED
    │   └── MalformedRequestError       MALFORMED_REQUEST
    ├── NotFoundError                   NOT_FOUND
    │   ├── UserNotFoundError           USER_NOT_FOUND
    │   └── AddressNotFoundError        ADDRESS_NOT_FOUND
    ├── AlreadyExistsError              ALREADY_EXISTS
    │   ├── EmailTakenError             EMAIL_TAKEN
    │   └── AddressExistsError          ADDRESS_EXISTS
    ├── StaleEtagError                  ABORTED, ETAG_MISMATCH
    ├── ImportAbortedError              ABORTED: send the whole import again
    │   ├── ImportIdleError             IMPORT_IDLE_TIMEOUT
    │   └── ImportExpiredError          IMPORT_EXPIRED
    ├── FailedPreconditionError         FAILED_PRECONDITION
    │   ├── UserHasAddressesError       USER_HAS_ADDRESSES
    │   ├── TooManyAddressesError       TOO_MANY_ADDRESSES
    │   └── ResumeTokenExpiredError     RESUME_TOKEN_EXPIRED
    ├── UnavailableError                UNAVAILABLE: the same call may succeed later
    │   ├── DatabaseUnavailableError    DATABASE_UNAVAILABLE
    │   ├── ServerDrainingError         SERVER_DRAINING
    │   ├── StreamBrokenOffError        STREAM_BROKEN_OFF
    │   └── OverloadedError             OVERLOADED
    ├── DeadlineExceededError           DEADLINE_EXCEEDED
    ├── UnauthenticatedError            UNAUTHENTICATED
    ├── PermissionDeniedError           PERMISSION_DENIED
    └── InternalError                   INTERNAL

Any other code (ABORTED without a reason, CANCELLED, ...) is a plain UsersError.

`error_from` picks the class by the ErrorInfo reason (REASONS), else by the code (CODES).
"""

from __future__ import annotations

from dataclasses import dataclass

# google.rpc is a namespace package that mypy resolves only through full imports.
import google.rpc.error_details_pb2 as error_details_pb2  # noqa: PLR0402
import google.rpc.status_pb2 as status_pb2  # noqa: PLR0402
import grpc
from grpc_status import rpc_status

DOMAIN = "users.v1"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str  # the request path, e.g. "user.email" or "requests[7].user.name"
    description: str


class UsersError(Exception):
    """A users.v1 call failed; `reason` and `metadata` come from the ErrorInfo."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.field_violations = field_violations
        self.retry_delay = retry_delay


class InvalidArgumentError(UsersError):
    pass


class RequestIdReusedError(InvalidArgumentError):
    pass


class MalformedRequestError(InvalidArgumentError):
    pass


class NotFoundError(UsersError):
    pass


class UserNotFoundError(NotFoundError):
    pass


class AddressNotFoundError(NotFoundError):
    pass


class AlreadyExistsError(UsersError):
    pass


class EmailTakenError(AlreadyExistsError):
    pass


class AddressExistsError(AlreadyExistsError):
    pass


class StaleEtagError(UsersError):
    pass


class ImportAbortedError(UsersError):
    pass


class ImportIdleError(ImportAbortedError):
    pass


class ImportExpiredError(ImportAbortedError):
    pass


class FailedPreconditionError(UsersError):
    pass


class UserHasAddressesError(FailedPreconditionError):
    pass


class TooManyAddressesError(FailedPreconditionError):
    pass


class ResumeTokenExpiredError(FailedPreconditionError):
    pass


class UnavailableError(UsersError):
    pass


class DatabaseUnavailableError(UnavailableError):
    pass


class ServerDrainingError(UnavailableError):
    pass


class StreamBrokenOffError(UnavailableError):
    pass


class OverloadedError(UnavailableError):
    pass


class DeadlineExceededError(UsersError):
    pass


class UnauthenticatedError(UsersError):
    pass


class PermissionDeniedError(UsersError):
    pass


class InternalError(UsersError):
    pass


# THE table: an ErrorInfo reason (API.md "Errors") -> the class raised for it.
REASONS: dict[str, type[UsersError]] = {
    "INVALID_ARGUMENT": InvalidArgumentError,
    "REQUEST_ID_REUSED": RequestIdReusedError,
    "MALFORMED_REQUEST": MalformedRequestError,
    "USER_NOT_FOUND": UserNotFoundError,
    "ADDRESS_NOT_FOUND": AddressNotFoundError,
    "EMAIL_TAKEN": EmailTakenError,
    "ADDRESS_EXISTS": AddressExistsError,
    "ETAG_MISMATCH": StaleEtagError,
    "IMPORT_IDLE_TIMEOUT": ImportIdleError,
    "IMPORT_EXPIRED": ImportExpiredError,
    "USER_HAS_ADDRESSES": UserHasAddressesError,
    "TOO_MANY_ADDRESSES": TooManyAddressesError,
    "RESUME_TOKEN_EXPIRED": ResumeTokenExpiredError,
    "DATABASE_UNAVAILABLE": DatabaseUnavailableError,
    "SERVER_DRAINING": ServerDrainingError,
    "STREAM_BROKEN_OFF": StreamBrokenOffError,
    "OVERLOADED": OverloadedError,
    "UNAUTHENTICATED": UnauthenticatedError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "INTERNAL": InternalError,
}

# A status without a known reason (one from grpc itself: no connection, a deadline).
CODES: dict[grpc.StatusCode, type[UsersError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.INTERNAL: InternalError,
}


def error_from(error: grpc.aio.AioRpcError) -> UsersError:
    """The typed exception for a failed call (raise it `from error`)."""
    code = error.code()
    message = error.details() or ""
    reason = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    retry_delay: float | None = None
    status = _status_of(error)
    for packed in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        bad_request = error_details_pb2.BadRequest()
        retry = error_details_pb2.RetryInfo()
        if packed.Unpack(info):
            if info.domain == DOMAIN:
                reason, metadata = info.reason, dict(info.metadata)
        elif packed.Unpack(bad_request):
            violations.extend(
                FieldViolation(v.field, v.description) for v in bad_request.field_violations
            )
        elif packed.Unpack(retry):
            retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    klass = REASONS.get(reason) or CODES.get(code, UsersError)
    return klass(
        code,
        message,
        reason=reason,
        metadata=metadata,
        field_violations=tuple(violations),
        retry_delay=retry_delay,
    )


def _status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The rich status in the call's trailers; None for a status from grpc itself (no
    connection, a deadline), which has none."""
    try:
        status: status_pb2.Status | None = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:  # trailers whose code disagrees with the call's: no details
        return None
    return status
