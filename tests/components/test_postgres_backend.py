"""What differs on PostgreSQL: the SQL route answers (tests/core/test_sql_query.py has the rest),
NUL in text is a 422."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.postgres_only


@pytest.mark.parametrize("prefix", ["/api/test/db", "/api/generator/db"])
def test_the_sql_route_answers_on_postgres(client: TestClient, prefix: str) -> None:
    response = client.post(f"{prefix}/query", json={"sql": "SELECT 1 AS one"})
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [[1]]
    refused = client.post(f"{prefix}/query", json={"sql": "SELECT pg_read_file('/etc/passwd')"})
    assert refused.status_code == 400 and refused.json()["code"] == "query_refused"


def test_nul_in_text_is_a_422_and_writes_nothing(client: TestClient) -> None:
    doc = {"run_id": "nul", "model_name": "a\x00b", "hardware": ["cpu"]}
    response = client.post("/api/test/db/runs", json=doc)
    assert response.status_code == 422 and response.json()["code"] == "nul_character"
    assert client.get("/api/test/db/run/nul").status_code == 404
