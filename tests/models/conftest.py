"""The model loop needs torch and transformers: it runs only when asked (`make test-models`)."""

from __future__ import annotations

import pytest

from tests.support import deselect_unless_asked

MARKER = "models"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave model tests out of runs that select no markers, so plain `make test` skips them."""
    deselect_unless_asked(config, items, MARKER)
