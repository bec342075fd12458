"""Fixtures of the unit tests: a fresh in-memory database per test, and its units."""

from __future__ import annotations

import pytest

from tests.unit.fakes import FakeDatabase, FakeUnitOfWorkFactory


@pytest.fixture
def database() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def units(database: FakeDatabase) -> FakeUnitOfWorkFactory:
    return database.units()
