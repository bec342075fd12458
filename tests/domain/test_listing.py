"""Listing rules of API.md, without a database: page sizes, order_by, filters, scopes."""

from __future__ import annotations

import pytest

from service.domain import listing
from service.domain import validation as check
from service.domain.queries import Ordering, SortField, UserFilter


@pytest.mark.parametrize(
    ("requested", "cap", "expected"),
    [(0, 1000, 50), (1, 1000, 1), (1000, 1000, 1000), (1001, 1000, 1000), (10**9, 200, 200)],
)
def test_page_size_defaults_and_caps(requested: int, cap: int, expected: int) -> None:
    found = check.Violations()
    assert listing.check_page_size(found, "page_size", requested, cap) == expected
    assert found.items == []


def test_negative_page_size_is_a_violation() -> None:
    found = check.Violations()
    listing.check_page_size(found, "page_size", -1, 1000)
    assert [v.field for v in found.items] == ["page_size"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Ordering()),
        ("id", Ordering()),
        ("id desc", Ordering(SortField.ID, descending=True)),
        ("create_time", Ordering(SortField.CREATE_TIME)),
        ("name desc", Ordering(SortField.NAME, descending=True)),
        ("  email   desc  ", Ordering(SortField.EMAIL, descending=True)),
    ],
)
def test_order_by_parses(text: str, expected: Ordering) -> None:
    found = check.Violations()
    assert listing.parse_order_by(found, "order_by", text) == expected
    assert found.items == []


@pytest.mark.parametrize(
    "text", ["desc", "id asc", "Name", "name,id", "name desc id", "id\x00", "update_time"]
)
def test_other_order_by_is_a_violation(text: str) -> None:
    found = check.Violations()
    listing.parse_order_by(found, "order_by", text)
    assert [v.field for v in found.items] == ["order_by"]


def test_filters_are_lower_cased() -> None:
    found = check.Violations()
    parsed = listing.check_user_filter(found, "EXAMPLE.com", "Ana%", "A@B.IO")
    assert parsed == UserFilter(
        email="a@b.io", email_domain="example.com", address_email_contains="ana%"
    )
    assert found.items == []


def test_scopes_differ_by_method_filter_order_and_parent() -> None:
    base = listing.users_scope(UserFilter(email_domain="a.io"), Ordering())
    assert base == listing.users_scope(UserFilter(email_domain="a.io"), Ordering(SortField.ID))
    others = {
        listing.users_scope(UserFilter(email_domain="b.io"), Ordering()),
        listing.users_scope(UserFilter(address_email_contains="a.io"), Ordering()),
        listing.users_scope(UserFilter(email="a.io"), Ordering()),
        listing.users_scope(UserFilter(email_domain="a.io"), Ordering(descending=True)),
        listing.addresses_scope(1),
        listing.addresses_scope(2),
    }
    assert len(others) == 6 and base not in others
