"""users_client: a Python client of users.v1 (asyncio, and a blocking wrapper).

It talks to a server over gRPC only and never imports the server's code (`service`).
"""

from users_client.blocking import BlockingUsersClient
from users_client.client import BASIC, FULL, UNSPECIFIED, UsersClient, tls_from_ca_file
from users_client.errors import (
    AddressExistsError,
    AddressNotFoundError,
    AlreadyExistsError,
    DatabaseUnavailableError,
    DeadlineExceededError,
    EmailTakenError,
    FailedPreconditionError,
    FieldViolation,
    ImportAbortedError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResumeTokenExpiredError,
    StaleEtagError,
    UnauthenticatedError,
    UnavailableError,
    UserHasAddressesError,
    UserNotFoundError,
    UsersError,
)
from users_client.rows import NewUser
from users_client.watch import Watch

__all__ = [
    "BASIC",
    "FULL",
    "UNSPECIFIED",
    "AddressExistsError",
    "AddressNotFoundError",
    "AlreadyExistsError",
    "BlockingUsersClient",
    "DatabaseUnavailableError",
    "DeadlineExceededError",
    "EmailTakenError",
    "FailedPreconditionError",
    "FieldViolation",
    "ImportAbortedError",
    "InternalError",
    "InvalidArgumentError",
    "NewUser",
    "NotFoundError",
    "PermissionDeniedError",
    "ResumeTokenExpiredError",
    "StaleEtagError",
    "UnauthenticatedError",
    "UnavailableError",
    "UserHasAddressesError",
    "UserNotFoundError",
    "UsersClient",
    "UsersError",
    "Watch",
    "tls_from_ca_file",
]
