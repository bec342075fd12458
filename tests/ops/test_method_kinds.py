"""Which methods a read token may call comes from the protos, and matches API.md."""

from __future__ import annotations

from service.api.registry import writes
from service.server import ADDRESS_SERVICE_DESCRIPTOR, USER_SERVICE_DESCRIPTOR


def test_exactly_the_reading_methods_are_marked_free_of_side_effects() -> None:
    reading = {
        m.name
        for service in (USER_SERVICE_DESCRIPTOR, ADDRESS_SERVICE_DESCRIPTOR)
        for m in service.methods
        if not writes(m)
    }
    assert reading == {
        "GetUser",
        "BatchGetUsers",
        "ListUsers",
        "StreamUsers",
        "WatchUsers",
        "GetAddress",
        "ListAddresses",
    }
