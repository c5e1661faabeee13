"""The model loop needs torch and transformers: it runs only when asked (`make test-models`)."""

from __future__ import annotations

import re

import pytest

MARKER = "models"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave model tests out of runs that select no markers, so plain `make test` skips them."""
    # A -m expression that names the marker decides: `-m models` runs them, `-m "not models"`
    # does not. Any other selection (none, or `-m "not e2e"`) leaves them out.
    if MARKER in re.findall(r"\w+", str(config.getoption("markexpr") or "")):
        return
    kept = [item for item in items if item.get_closest_marker(MARKER) is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept
