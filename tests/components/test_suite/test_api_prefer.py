"""`Prefer: return=minimal` answers a recording with the run's summary, not its child rows."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_prefer_minimal_answers_with_the_summary_and_stores_everything(client: TestClient) -> None:
    details = [{"name": f"t{i}", "status": "passed" if i % 4 else "failed"} for i in range(400)]
    doc = {"run_id": "big", "model_name": "m", "results": {"test_details": details}}
    response = client.post("/api/test/db/runs", json=doc, headers={"Prefer": "return=minimal"})
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "return=minimal"
    body = response.json()
    assert "results" not in body and "steps" not in body
    assert (body["tests_passed"], body["tests_failed"]) == (300, 100)
    stored = client.get("/api/test/db/run/big").json()
    assert len(stored["results"]["test_details"]) == 400


def test_without_prefer_the_answer_is_the_whole_run(client: TestClient) -> None:
    doc = {
        "run_id": "r",
        "model_name": "m",
        "results": {"test_details": [{"name": "a", "status": "passed"}]},
    }
    response = client.post("/api/test/db/runs", json=doc)
    assert "Preference-Applied" not in response.headers
    assert response.json()["results"]["test_details"][0]["name"] == "a"
