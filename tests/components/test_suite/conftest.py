"""Fixtures of the Test Suite tests (shared helpers are in support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.core.config import Settings
from app.core.context import AppContext
from app.core.db import Database


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The Test Suite database on this test's fresh copy, for service-level tests (no app)."""
    ctx = AppContext(settings)
    yield ctx.database("test_suite")
    ctx.registry.dispose()
