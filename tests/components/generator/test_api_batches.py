"""Generator batches: creation with members, moving tasks, derived status, lists and details."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

DB = "/api/generator/db"


def task(client: TestClient, task_id: str, status: str = "initializing", **fields: Any) -> None:
    body = {"task_id": task_id, "model_name": f"model-{task_id}", "status": status, **fields}
    response = client.post(f"{DB}/tasks", json=body)
    assert response.status_code == 201, response.text


def batch(client: TestClient, batch_id: str) -> dict[str, Any]:
    response = client.get(f"{DB}/batch/{batch_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_create_batch_with_tasks(client: TestClient) -> None:
    task(client, "a", "running", started_at="2026-01-01T00:00:00Z")
    task(client, "b", "queued", started_at="2026-01-01T00:05:00Z")
    response = client.post(
        f"{DB}/batches",
        json={"batch_id": "b1", "description": "nightly", "task_ids": ["a", "b", "a"]},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["batch_id"] == "b1" and body["description"] == "nightly"
    assert body["status"] == "running"
    assert body["task_count"] == 2
    assert body["counts"] == {"total": 2, "by_status": {"running": 1, "queued": 1}}
    assert [t["task_id"] for t in body["tasks"]] == ["a", "b"]
    assert body["started_at"].startswith("2026-01-01T00:00:00")
    assert body["completed_at"] is None
    for task_id in ("a", "b"):
        assert client.get(f"{DB}/task/{task_id}").json()["batch_id"] == "b1"


def test_create_batch_generates_an_id(client: TestClient) -> None:
    body = client.post(f"{DB}/batches", json={"description": "empty"}).json()
    assert len(body["batch_id"]) == 32
    assert body["status"] == "initializing" and body["task_count"] == 0 and body["tasks"] == []


def test_create_batch_with_a_missing_task_is_404_and_writes_nothing(client: TestClient) -> None:
    task(client, "a")
    response = client.post(f"{DB}/batches", json={"batch_id": "b1", "task_ids": ["a", "zz"]})
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found" and "zz" in body["detail"]
    assert client.get(f"{DB}/batch/b1").status_code == 404
    assert client.get(f"{DB}/task/a").json()["batch_id"] is None


def test_creating_an_existing_batch_is_409(client: TestClient) -> None:
    assert client.post(f"{DB}/batches", json={"batch_id": "b1"}).status_code == 201
    response = client.post(f"{DB}/batches", json={"batch_id": "b1"})
    assert response.status_code == 409
    assert response.json()["code"] == "batch_exists"


def test_moving_a_task_between_batches_updates_both(client: TestClient) -> None:
    task(client, "a", "completed")
    task(client, "b", "error")
    client.post(f"{DB}/batches", json={"batch_id": "one", "task_ids": ["a", "b"]})
    client.post(f"{DB}/batches", json={"batch_id": "two"})
    assert batch(client, "one")["status"] == "partial"
    response = client.put(f"{DB}/batch/two/tasks/b")
    assert response.status_code == 200, response.text
    two = response.json()
    assert two["status"] == "error" and two["task_count"] == 1
    assert [t["task_id"] for t in two["tasks"]] == ["b"]
    one = batch(client, "one")
    assert one["status"] == "completed" and one["task_count"] == 1
    assert one["counts"] == {"total": 1, "by_status": {"completed": 1}}
    assert client.get(f"{DB}/task/b").json()["batch_id"] == "two"


def test_moving_into_a_missing_batch_or_a_missing_task_is_404(client: TestClient) -> None:
    task(client, "a")
    client.post(f"{DB}/batches", json={"batch_id": "one"})
    assert client.put(f"{DB}/batch/nope/tasks/a").status_code == 404
    assert client.put(f"{DB}/batch/one/tasks/nope").status_code == 404


def test_creating_a_batch_takes_its_tasks_from_their_previous_batch(client: TestClient) -> None:
    task(client, "a", "completed")
    task(client, "b", "running")
    client.post(f"{DB}/batches", json={"batch_id": "old", "task_ids": ["a", "b"]})
    assert batch(client, "old")["status"] == "running"
    client.post(f"{DB}/batches", json={"batch_id": "new", "task_ids": ["b"]})
    old = batch(client, "old")
    assert old["status"] == "completed" and old["task_count"] == 1
    assert [t["task_id"] for t in batch(client, "new")["tasks"]] == ["b"]


def test_recording_a_task_with_a_new_batch_id_creates_the_batch(client: TestClient) -> None:
    task(client, "a", "completed", batch_id="auto")
    got = batch(client, "auto")
    assert got["status"] == "completed" and got["task_count"] == 1


def test_reposting_a_task_into_another_batch_moves_it(client: TestClient) -> None:
    task(client, "a", "running", batch_id="one")
    task(client, "a", "running", batch_id="two")
    assert batch(client, "one")["task_count"] == 0
    assert batch(client, "one")["status"] == "initializing"
    assert batch(client, "two")["task_count"] == 1


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "initializing"),
        (["initializing", "initializing"], "initializing"),
        (["initializing", "queued"], "running"),
        (["running", "completed"], "running"),
        (["completed", "completed"], "completed"),
        (["completed", "error"], "partial"),
        (["completed", "cancelled"], "partial"),
        (["error", "error"], "error"),
        (["error", "cancelled"], "error"),
        (["cancelled", "cancelled"], "cancelled"),
    ],
)
def test_batch_status_follows_its_members(
    client: TestClient, statuses: list[str], expected: str
) -> None:
    ids = [f"t{i}" for i in range(len(statuses))]
    for task_id, status in zip(ids, statuses, strict=True):
        task(client, task_id, status)
    client.post(f"{DB}/batches", json={"batch_id": "b", "task_ids": ids})
    got = batch(client, "b")
    assert got["status"] == expected
    assert got["counts"]["total"] == len(statuses)
    done = expected in {"completed", "partial", "error", "cancelled"}
    assert (got["completed_at"] is not None) == done


def test_batch_status_changes_as_members_progress(client: TestClient) -> None:
    task(client, "a", started_at="2026-01-01T00:00:00Z")
    task(client, "b", started_at="2026-01-01T00:00:10Z")
    client.post(f"{DB}/batches", json={"batch_id": "b", "task_ids": ["a", "b"]})
    assert batch(client, "b")["status"] == "initializing"
    client.patch(f"{DB}/task/a", json={"status": "running"})
    assert batch(client, "b")["status"] == "running"
    client.post(f"{DB}/task/a/complete", json={"completed_at": "2026-01-01T00:01:00Z"})
    assert batch(client, "b")["status"] == "running"
    client.post(
        f"{DB}/task/b/complete", json={"status": "error", "completed_at": "2026-01-01T00:02:00Z"}
    )
    got = batch(client, "b")
    assert got["status"] == "partial"
    assert got["started_at"].startswith("2026-01-01T00:00:00")
    assert got["completed_at"].startswith("2026-01-01T00:02:00")
    assert got["duration"] == 120.0
    assert got["counts"]["by_status"] == {"completed": 1, "error": 1}


def test_deleting_a_member_updates_the_batch(client: TestClient) -> None:
    task(client, "a", "completed")
    task(client, "b", "running")
    client.post(f"{DB}/batches", json={"batch_id": "b", "task_ids": ["a", "b"]})
    assert client.delete(f"{DB}/task/b").status_code == 200
    got = batch(client, "b")
    assert got["status"] == "completed" and got["task_count"] == 1


def test_list_batches_counts_and_filters_by_status(client: TestClient) -> None:
    task(client, "a", "completed")
    task(client, "b", "running")
    client.post(f"{DB}/batches", json={"batch_id": "done", "task_ids": ["a"]})
    client.post(f"{DB}/batches", json={"batch_id": "busy", "task_ids": ["b"]})
    client.post(f"{DB}/batches", json={"batch_id": "empty"})
    response = client.get(f"{DB}/batches")
    assert response.status_code == 200
    assert response.headers["X-Total-Count"] == "3"
    assert {b["batch_id"] for b in response.json()} == {"done", "busy", "empty"}
    response = client.get(f"{DB}/batches", params={"status": "running"})
    assert response.headers["X-Total-Count"] == "1"
    rows = response.json()
    assert [b["batch_id"] for b in rows] == ["busy"]
    assert rows[0]["counts"] == {"total": 1, "by_status": {"running": 1}}
    page = client.get(f"{DB}/batches", params={"limit": 1, "offset": 1})
    assert page.headers["X-Total-Count"] == "3" and len(page.json()) == 1
    assert client.get(f"{DB}/batches", params={"status": "bogus"}).status_code == 422


def test_get_batch_lists_its_tasks(client: TestClient) -> None:
    task(
        client,
        "a",
        "completed",
        started_at="2026-01-01T00:00:00Z",
        completed_at="2026-01-01T00:00:05Z",
        output_file="out/test_a.py",
        architecture="decoder_only",
    )
    client.post(f"{DB}/batches", json={"batch_id": "b", "task_ids": ["a"], "creator": "me"})
    got = batch(client, "b")
    assert got["creator"] == "me"
    assert got["tasks"] == [
        {
            "task_id": "a",
            "model_name": "model-a",
            "status": "completed",
            "started_at": "2026-01-01T00:00:00Z",
            "completed_at": "2026-01-01T00:00:05Z",
            "duration": 5.0,
            "output_file": "out/test_a.py",
            "architecture": "decoder_only",
        }
    ]
    assert client.get(f"{DB}/batch/missing").status_code == 404


def test_delete_batch_keeps_tasks_unlinked(client: TestClient) -> None:
    task(client, "a", "completed")
    client.post(f"{DB}/batches", json={"batch_id": "b", "task_ids": ["a"]})
    response = client.delete(f"{DB}/batch/b")
    assert response.status_code == 200
    assert response.json()["status"] == "success"
    assert client.get(f"{DB}/batch/b").status_code == 404
    assert client.get(f"{DB}/task/a").json()["batch_id"] is None
    assert client.get(f"{DB}/tasks", params={"batch_id": "b"}).json() == []


def test_delete_batch_with_delete_tasks_removes_them(client: TestClient) -> None:
    task(client, "a", "completed", tags={"x": "y"}, steps=[{"step_name": "s"}])
    task(client, "other", "completed")
    client.post(f"{DB}/batches", json={"batch_id": "b", "task_ids": ["a"]})
    response = client.delete(f"{DB}/batch/b", params={"delete_tasks": True})
    assert response.status_code == 200
    assert response.json()["deleted"]["generator_tasks"] == 1
    assert client.get(f"{DB}/task/a").status_code == 404
    assert client.get(f"{DB}/task/other").status_code == 200
    assert client.delete(f"{DB}/batch/b").status_code == 404
