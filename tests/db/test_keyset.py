"""Keyset SQL pieces that need no database: LIKE escaping of address_email_contains."""

from __future__ import annotations

import pytest

from service.db.keyset import contains_pattern


@pytest.mark.parametrize(
    ("needle", "pattern"),
    [
        ("ana", "%ana%"),
        ("%", "%/%%"),
        ("_", "%/_%"),
        ("/", "%//%"),
        ("\\", "%\\%"),
        ("a/_%b", "%a///_/%b%"),
    ],
)
def test_contains_pattern_escapes_wildcards(needle: str, pattern: str) -> None:
    assert contains_pattern(needle) == pattern
