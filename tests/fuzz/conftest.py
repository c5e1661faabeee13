"""The API fuzz runs only when asked (`make test-api-fuzz`): it takes minutes and schemathesis."""

from __future__ import annotations

import pytest

from tests.support import deselect_unless_asked

MARKER = "fuzz"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave fuzz tests out of runs that do not name the marker, so plain `make test` skips them."""
    deselect_unless_asked(config, items, MARKER)
