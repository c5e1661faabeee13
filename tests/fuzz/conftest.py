"""The API fuzz runs only when asked (`make test-api-fuzz`): it takes minutes and schemathesis."""

from __future__ import annotations

import re

import pytest

MARKER = "fuzz"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave fuzz tests out of runs that do not name the marker, so plain `make test` skips them."""
    if MARKER in re.findall(r"\w+", str(config.getoption("markexpr") or "")):
        return
    kept = [item for item in items if item.get_closest_marker(MARKER) is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept
