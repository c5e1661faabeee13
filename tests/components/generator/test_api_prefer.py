"""`Prefer: return=minimal` on the generator's task writes: the task's own fields, as written."""

from __future__ import annotations

from fastapi.testclient import TestClient

DB = "/api/generator/db"
MINIMAL = {"Prefer": "return=minimal"}
PATCHES = [
    {"status": "running", "progress": 0.3, "current_step": "render"},
    {"started_at": "2026-01-02T03:04:05+02:00", "hardware": ["cuda", "cpu"]},
    {"template_context": {"a": [1, 2]}, "architecture": "encoder-only", "error": "slow"},
]


def _same_as_read(client: TestClient, answer: dict[str, object]) -> None:
    read = client.get(f"{DB}/task/{answer['task_id']}").json()
    assert "steps" not in answer and "tags" not in answer
    assert answer == {key: read[key] for key in answer}


def test_minimal_task_writes_answer_what_a_read_then_shows(client: TestClient) -> None:
    doc = {"task_id": "t", "model_name": "bert", "batch_id": "b", "tags": {"k": "v"}}
    posted = client.post(f"{DB}/tasks", json=doc, headers=MINIMAL)
    assert posted.status_code == 201 and posted.headers["Preference-Applied"] == "return=minimal"
    _same_as_read(client, posted.json())
    for body in PATCHES:
        answer = client.patch(f"{DB}/task/t", json=body, headers=MINIMAL)
        assert answer.status_code == 200, answer.text
        _same_as_read(client, answer.json())
    done = client.post(f"{DB}/task/t/complete", json={"output_file": "x.py"}, headers=MINIMAL)
    assert done.status_code == 200 and done.json()["status"] == "completed"
    _same_as_read(client, done.json())
    again = client.post(f"{DB}/task/t/complete", json={}, headers=MINIMAL)
    assert again.json() == done.json()


def test_without_prefer_task_writes_answer_the_whole_task(client: TestClient) -> None:
    client.post(f"{DB}/tasks", json={"task_id": "w", "model_name": "m", "tags": {"k": "v"}})
    answer = client.patch(f"{DB}/task/w", json={"progress": 0.5})
    assert "Preference-Applied" not in answer.headers
    assert answer.json()["tags"] == {"k": "v"} and answer.json()["steps"] == []


def test_a_minimal_patch_of_a_missing_task_is_404(client: TestClient) -> None:
    assert (
        client.patch(f"{DB}/task/nope", json={"progress": 0.5}, headers=MINIMAL).status_code == 404
    )
