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


PATCHES = [
    {"progress": 0.25, "current_step": "load"},
    {"started_at": "2026-01-02T03:04:05+02:00", "hardware": ["cuda", "cpu"]},
    {"completed_at": "2026-01-02T05:00:00", "error": "slow"},
    {"test_type": "integration", "timeout": 30, "save_results": True, "creator": "ci"},
    {"status": "completed"},
]


def test_a_minimal_patch_answers_what_a_read_then_shows(client: TestClient) -> None:
    """PATCH's minimal answer is built from the write (no read after it): it must still equal
    the run as read afterwards, field by field, through offsets, naive times and a status change
    that makes the run's outcome."""
    doc = {
        "run_id": "p",
        "model_name": "m",
        "status": "running",
        "batch_id": "b1",
        "results": {"test_details": [{"name": "a", "status": "passed"}]},
    }
    assert client.post("/api/test/db/runs", json=doc).status_code == 201
    minimal = {"Prefer": "return=minimal"}
    for body in PATCHES:
        answer = client.patch("/api/test/db/run/p", json=body, headers=minimal)
        assert answer.status_code == 200, answer.text
        assert answer.headers["Preference-Applied"] == "return=minimal"
        read = client.get("/api/test/db/run/p").json()
        assert answer.json() == {key: read[key] for key in answer.json()}, body
    assert answer.json()["outcome"] == "passed" and answer.json()["batch_ids"] == ["b1"]


def test_a_minimal_patch_of_a_missing_or_finished_run_is_refused(client: TestClient) -> None:
    minimal = {"Prefer": "return=minimal"}
    missing = client.patch("/api/test/db/run/nope", json={"progress": 0.5}, headers=minimal)
    assert missing.status_code == 404
    client.post("/api/test/db/runs", json={"run_id": "done", "model_name": "m"})
    client.post("/api/test/db/run/done/complete", json={})
    refused = client.patch("/api/test/db/run/done", json={"status": "running"}, headers=minimal)
    assert refused.status_code == 409
    assert refused.json()["code"] == "invalid_transition"


def _details(passed: int, failed: int, skipped: int) -> list[dict[str, str]]:
    statuses = ["passed"] * passed + ["error"] * failed + ["skipped"] * skipped
    return [{"name": f"t{i}", "status": s} for i, s in enumerate(statuses)]


NEW_RUNS = [
    {"status": "running"},
    {"status": "completed", "results": {"test_details": _details(3, 0, 1)}},
    {"status": "completed", "results": {"test_details": _details(0, 0, 2)}},
    {"status": "completed", "results": {"test_details": _details(40, 2, 0)}, "batch_id": "nb"},
    {"status": "completed"},
    {"status": "error", "error": "boom", "results": {"tests_passed": 5}},
    {"status": "timeout", "started_at": "2026-01-02T03:04:05+02:00", "duration": 12.5},
    {"status": "cancelled", "hardware": ["cuda", "cpu"], "completed_at": "2026-01-02T05:00:00"},
    {"results": {"tests_passed": 1, "tests_failed": 1, "tests_skipped": 1}, "tags": {"k": "v"}},
]


def test_a_new_runs_minimal_answer_is_built_from_its_write_and_equals_a_read(
    client: TestClient,
) -> None:
    """POST /runs answers a new run's summary from what its transaction wrote (the row as
    inserted, the counts, its batch and the outcome computed in Python): each must equal the
    run as read afterwards, for every outcome."""
    minimal = {"Prefer": "return=minimal"}
    outcomes = set()
    for k, extra in enumerate(NEW_RUNS):
        doc = {"run_id": f"new{k}", "model_name": "m", **extra}
        answer = client.post("/api/test/db/runs", json=doc, headers=minimal)
        assert answer.status_code == 201, answer.text
        read = client.get(f"/api/test/db/run/new{k}").json()
        assert answer.json() == {key: read[key] for key in answer.json()}, extra
        outcomes.add(answer.json()["outcome"])
        again = client.post("/api/test/db/runs", json=doc, headers=minimal)  # a re-post: read
        assert again.json() == answer.json()
    assert outcomes == {None, "passed", "failed", "no_tests"}
