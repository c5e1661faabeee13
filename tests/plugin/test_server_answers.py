"""The answers the plugin's sender asks for: `Prefer: return=minimal` on PATCH and /complete."""

from __future__ import annotations

from fastapi.testclient import TestClient

B = "/api/test/db"
MINIMAL = {"Prefer": "return=minimal"}


def test_patch_and_complete_answer_with_the_summary_when_asked(client: TestClient) -> None:
    run = {"run_id": "p-1", "model_name": "gpt2", "status": "running"}
    assert client.post(f"{B}/runs", json=run, headers=MINIMAL).status_code == 201
    cases = [{"name": f"t.py::test[{i}]", "status": "passed"} for i in range(3)]
    assert client.post(f"{B}/run/p-1/cases", json=cases).status_code == 201

    full = client.patch(f"{B}/run/p-1", json={"progress": 0.5})
    assert full.status_code == 200, full.text
    assert len(full.json()["results"]["test_details"]) == 3
    assert "Preference-Applied" not in full.headers

    short = client.patch(f"{B}/run/p-1", json={"progress": 0.75}, headers=MINIMAL)
    assert short.status_code == 200, short.text
    assert short.headers["Preference-Applied"] == "return=minimal"
    assert short.json()["progress"] == 0.75 and "results" not in short.json()

    done = client.post(f"{B}/run/p-1/complete", json={"status": "completed"}, headers=MINIMAL)
    assert done.status_code == 200, done.text
    assert done.headers["Preference-Applied"] == "return=minimal"
    assert done.json()["status"] == "completed" and "results" not in done.json()
    stored = client.get(f"{B}/run/p-1").json()
    assert stored["progress"] == 1.0 and len(stored["results"]["test_details"]) == 3
