"""`offset` is capped (MAX_OFFSET) on every list: past it a 422, never a 500 from DuckDB."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.core.pagination import MAX_OFFSET

LISTS = [
    "/api/test/db/runs",
    "/api/test/db/batches",
    "/api/test/runs",
    "/api/generator/db/tasks",
    "/api/generator/db/batches",
    "/api/generator/tasks",
    "/api/test/db/tests",
    "/api/test/db/tests/history?test_id=t",
    "/api/test/db/flaky",
]


def with_offset(path: str, offset: int) -> str:
    """Return `path` with an `offset` query parameter added."""
    return f"{path}{'&' if '?' in path else '?'}offset={offset}"


@pytest.mark.parametrize("path", LISTS)
def test_an_offset_past_the_cap_is_a_422(client: TestClient, path: str) -> None:
    for offset in (2**63, 2**63 - 1, 2**64, MAX_OFFSET + 1):
        response = client.get(with_offset(path, offset))
        assert response.status_code == 422, (offset, response.text)
        assert response.json()["detail"][0]["loc"][-1] == "offset"


@pytest.mark.parametrize("path", LISTS)
def test_the_cap_itself_is_an_empty_page(client: TestClient, path: str) -> None:
    response = client.get(with_offset(path, MAX_OFFSET))
    assert response.status_code == 200, response.text
    assert response.json() == []
