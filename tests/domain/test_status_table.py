"""Every domain error has a row in the one status table (STYLE.md: errors, one path)."""

from __future__ import annotations

import inspect

import grpc

from service.api import errors as transport
from service.api import status
from service.domain import errors


def all_error_classes() -> list[type[errors.DomainError]]:
    return [
        klass
        for module in (errors, transport)
        for _, klass in inspect.getmembers(module, inspect.isclass)
        if issubclass(klass, errors.DomainError) and klass is not errors.DomainError
    ]


def test_every_domain_error_maps_to_a_code() -> None:
    unmapped = [k.__name__ for k in all_error_classes() if status.code_for(k) is None]
    assert unmapped == []


def test_every_concrete_error_has_its_own_stable_reason() -> None:
    reasons = {
        k.reason
        for k in all_error_classes()
        if k.reason != "DOMAIN_ERROR" and not k.__subclasses__()
    }
    leaves = [k for k in all_error_classes() if not k.__subclasses__()]
    assert len(reasons) == len(leaves)
    assert all(r.isupper() and " " not in r for r in reasons)


def test_codes_are_the_contracts() -> None:
    assert status.code_for(errors.EmailTakenError) == grpc.StatusCode.ALREADY_EXISTS
    assert status.code_for(errors.StaleEtagError) == grpc.StatusCode.ABORTED
    assert status.code_for(errors.UserHasAddressesError) == grpc.StatusCode.FAILED_PRECONDITION
    assert status.code_for(errors.DatabaseUnavailableError) == grpc.StatusCode.UNAVAILABLE
    assert status.code_for(errors.RequestIdReusedError) == grpc.StatusCode.INVALID_ARGUMENT
