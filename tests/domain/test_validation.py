"""Field rules of API.md, without a database."""

from __future__ import annotations

import pytest

from service.domain import validation as check
from service.domain.errors import InvalidArgumentError


@pytest.mark.parametrize(
    "email",
    ["a@example.com", "first.last+tag@sub.example.co", "x_y-z@a-b.io", "A@EXAMPLE.COM"],
)
def test_valid_emails(email: str) -> None:
    assert check.is_email(email)


@pytest.mark.parametrize(
    "email",
    [
        "plain",
        "@example.com",
        "a@",
        "a@localhost",
        "a..b@example.com",
        ".a@example.com",
        "a@-x.com",
        "a@x-.com",
        "a b@example.com",
        "a@exa mple.com",
        "ä@example.com",
        "a@@example.com",
        "a@example..com",
        "l" * 65 + "@example.com",
    ],
)
def test_invalid_emails(email: str) -> None:
    assert not check.is_email(email)


def test_violations_collect_every_field() -> None:
    found = check.Violations()
    check.check_name(found, "user.name", "")
    check.check_email(found, "user.email", "nope")
    check.check_id(found, "id", -4)
    assert [v.field for v in found.items] == ["user.name", "user.email", "id"]
    with pytest.raises(InvalidArgumentError) as raised:
        found.raise_if_any()
    assert len(raised.value.violations) == 3


def test_name_length_counts_code_points() -> None:
    found = check.Violations()
    check.check_name(found, "n", "😀" * 50)
    check.check_name(found, "n", "e\u0301" * 25)
    assert found.items == []
    check.check_name(found, "n", "😀" * 51)
    assert len(found.items) == 1


def test_email_is_lower_cased() -> None:
    assert check.check_email(check.Violations(), "e", "Ana@Example.COM") == "ana@example.com"


def test_repeats_name_the_first_occurrence() -> None:
    found = check.Violations()
    check.check_unique(found, "a", ["x", "y", "x"], "the email")
    assert [(v.field, v.description) for v in found.items] == [
        ("a[2]", "repeats the email of a[0]")
    ]
