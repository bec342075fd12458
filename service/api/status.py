"""THE error mapping: domain errors -> gRPC status with google.rpc details.

The call layer (api/calls.py) applies `status_for` to every users.v1 call, unary and
streaming alike, so no handler holds a try/except. Anything not in the table becomes
INTERNAL with a generic message; the traceback goes to the server log only.
CancelledError always propagates.
"""

from __future__ import annotations

import logging
import uuid

# google.rpc is a namespace package that mypy resolves only through full imports.
import google.rpc.error_details_pb2 as error_details_pb2  # noqa: PLR0402
import google.rpc.status_pb2 as status_pb2  # noqa: PLR0402
import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from grpc_status import rpc_status

from service.api import errors as transport
from service.domain import errors

log = logging.getLogger("users.errors")

DOMAIN = "users.v1"
RETRY_AFTER_SECONDS = 1

# Looked up along the error's class hierarchy, most specific first.
STATUS_CODES: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    errors.StaleEtagError: grpc.StatusCode.ABORTED,
    # AIP-193: ABORTED asks the client to retry at a higher level (the whole import).
    errors.ImportAbortedError: grpc.StatusCode.ABORTED,
    errors.FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.UnavailableError: grpc.StatusCode.UNAVAILABLE,
    transport.AuthenticationError: grpc.StatusCode.UNAUTHENTICATED,
    transport.PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
}


def code_for(error_type: type[errors.DomainError]) -> grpc.StatusCode | None:
    for klass in error_type.__mro__:
        if klass in STATUS_CODES:
            return STATUS_CODES[klass]
    return None


# Details travel in a trailer, and grpc clients refuse trailers over 16 KiB by default
# (RESOURCE_EXHAUSTED instead of the status): a request with a thousand bad rows lists
# the violations that fit this many bytes, and says how many there were.
VIOLATION_BYTES = 6 * 1024


def details_for(error: errors.DomainError) -> list[Message]:
    metadata = error.metadata
    violations: tuple[errors.FieldViolation, ...] = ()
    if isinstance(error, errors.InvalidArgumentError):
        violations = _fitting(error.violations)
        if len(violations) < len(error.violations):
            metadata = {
                "fields": ",".join(dict.fromkeys(v.field for v in violations)),
                "violation_count": str(len(error.violations)),
                "violations_listed": str(len(violations)),
            }
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata)
    details: list[Message] = [info]
    if isinstance(error, errors.InvalidArgumentError):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in violations
                ]
            )
        )
    elif isinstance(error, errors.NotFoundError):
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type=error.resource_type,
                resource_name=str(error.resource_id),
                description=error.message,
            )
        )
    elif isinstance(error, errors.FailedPreconditionError):
        details.append(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=error.violation_type, subject=error.subject, description=error.message
                    )
                ]
            )
        )
    elif isinstance(error, errors.UnavailableError):
        details.append(
            error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=RETRY_AFTER_SECONDS)
            )
        )
    return details


def _fitting(
    violations: tuple[errors.FieldViolation, ...],
) -> tuple[errors.FieldViolation, ...]:
    """The first violations whose field (twice: BadRequest and ErrorInfo's "fields") and
    description fit VIOLATION_BYTES."""
    used = 0
    for count, violation in enumerate(violations):
        used += 2 * len(violation.field.encode()) + len(violation.description.encode()) + 8
        if used > VIOLATION_BYTES:
            return violations[:count]
    return violations


def status_of(code: grpc.StatusCode, message: str, details: list[Message]) -> grpc.Status:
    packed = []
    for detail in details:
        wrapped = any_pb2.Any()
        wrapped.Pack(detail)
        packed.append(wrapped)
    # google.rpc.Code shares its numbers with grpc.StatusCode.
    proto = status_pb2.Status(code=code.value[0], message=message, details=packed)
    return rpc_status.to_status(proto)


def internal_status() -> grpc.Status:
    incident = uuid.uuid4().hex[:12]
    log.exception("unexpected error, incident %s", incident)
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=DOMAIN, metadata={"incident": incident}
    )
    return status_of(
        grpc.StatusCode.INTERNAL,
        f"internal error (incident {incident}); the details are in the server log",
        [info],
    )


def domain_status(error: errors.DomainError) -> grpc.Status:
    code = code_for(type(error))
    if code is None:
        return internal_status()
    return status_of(code, error.message, details_for(error))


def status_for(error: Exception) -> grpc.Status:
    """The status a failed call ends with; unforeseen errors are logged here."""
    return domain_status(error) if isinstance(error, errors.DomainError) else internal_status()
