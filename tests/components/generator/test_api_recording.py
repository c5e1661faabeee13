"""Generator recording API: task documents, partial updates, steps, metrics, tags, complete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select

from app.components.generator.models import Task, TaskBatch, TaskMetric, TaskStep, TaskTag
from app.core.config import Settings
from app.main import create_app
from tests.components.generator.support import full_document

DB = "/api/generator/db"
GENERATOR_TABLES = (Task, TaskStep, TaskMetric, TaskTag, TaskBatch)


def instant(value: str | None) -> datetime | None:
    """Parse an ISO 8601 timestamp (any offset) into an aware UTC datetime."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, f"{value} has no offset"
    return parsed.astimezone(UTC)


def table_counts(settings: Settings) -> dict[str, int]:
    """Count the rows of every generator table in the DuckDB file (the app must be closed)."""
    engine = create_engine(settings.database_url("generator"))
    try:
        with engine.connect() as conn:
            return {
                model.__tablename__: int(
                    conn.scalar(select(func.count()).select_from(model.__table__)) or 0
                )
                for model in GENERATOR_TABLES
            }
    finally:
        engine.dispose()


def post(client: TestClient, doc: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = client.post(f"{DB}/tasks", json=doc)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def get_task(client: TestClient, task_id: str) -> dict[str, Any]:
    response = client.get(f"{DB}/task/{task_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_reads_back(doc: dict[str, Any], got: dict[str, Any]) -> None:
    """Assert every field of a posted document reads back unchanged (timestamps as instants)."""
    times = {"started_at", "completed_at", "timestamp"}
    for key, sent in doc.items():
        if key == "steps":
            assert len(got["steps"]) == len(sent)
            by_name = {s["step_name"]: s for s in got["steps"]}
            for step in sent:
                stored = by_name[step["step_name"]]
                for k, v in step.items():
                    assert (instant(stored[k]) if k in times else stored[k]) == (
                        instant(v) if k in times else v
                    ), (step["step_name"], k)
        elif key == "metrics":
            stored_metrics = [
                (m["name"], m["value"], m["unit"], m["hardware"], instant(m["timestamp"]))
                for m in got["metrics"]
            ]
            sent_metrics = [
                (m["name"], m["value"], m["unit"], m["hardware"], instant(m["timestamp"]))
                for m in sent
            ]
            assert sorted(stored_metrics, key=repr) == sorted(sent_metrics, key=repr)
        elif key in times:
            assert instant(got[key]) == instant(sent), key
        else:
            assert got[key] == sent, key


# --- whole documents -------------------------------------------------------------------------


def test_posted_task_reads_back_unchanged(client: TestClient) -> None:
    doc = full_document()
    created = post(client, doc)
    assert_reads_back(doc, created)
    got = get_task(client, "task-1")
    assert_reads_back(doc, got)
    assert got["duration"] == pytest.approx(42.25)
    assert instant(got["created_at"]) is not None
    # Timestamps are returned in UTC.
    assert got["started_at"].endswith(("Z", "+00:00"))


def test_reposting_a_task_is_an_idempotent_upsert_without_duplicate_rows(
    settings: Settings,
) -> None:
    doc = full_document()
    with TestClient(create_app(settings)) as client:
        first = post(client, doc)
        second = post(client, doc)
        third = post(client, doc)
        assert first == second == third
        listed = client.get(f"{DB}/tasks")
        assert listed.headers["X-Total-Count"] == "1"
    assert table_counts(settings) == {
        "generator_tasks": 1,
        "generator_task_steps": 2,
        "generator_task_metrics": 2,
        "generator_task_tags": 2,
        "generator_batch_tasks": 1,
    }


def test_reposting_changes_only_what_was_sent(client: TestClient) -> None:
    post(client, full_document())
    post(client, {"task_id": "task-1", "model_name": "bert-large", "tags": {"only": "this"}})
    got = get_task(client, "task-1")
    assert got["model_name"] == "bert-large"
    assert got["tags"] == {"only": "this"}
    assert len(got["steps"]) == 2 and len(got["metrics"]) == 2
    assert got["hardware"] == ["cpu", "cuda"]
    assert got["output_file"] == "generated/test_bert.py"
    assert instant(got["completed_at"]) == datetime(2026, 3, 1, 8, 0, 42, 250000, tzinfo=UTC)
    post(client, {"task_id": "task-1", "model_name": "bert-large", "steps": [], "metrics": []})
    got = get_task(client, "task-1")
    assert got["steps"] == [] and got["metrics"] == [] and got["tags"] == {"only": "this"}


def test_task_id_is_generated_when_absent(client: TestClient) -> None:
    one = post(client, {"model_name": "gpt2"})
    two = post(client, {"model_name": "gpt2"})
    assert one["task_id"] != two["task_id"]
    assert len(one["task_id"]) == 32 and int(one["task_id"], 16) >= 0
    assert get_task(client, one["task_id"])["model_name"] == "gpt2"


def test_new_task_defaults(client: TestClient) -> None:
    got = post(client, {"model_name": "gpt2"})
    assert got["status"] == "initializing"
    assert got["hardware"] == ["cpu"]
    assert got["progress"] == 0.0
    assert got["task_type"] == "single"
    assert got["completed_at"] is None and got["duration"] is None
    started = instant(got["started_at"])
    assert started is not None
    assert abs((datetime.now(UTC) - started).total_seconds()) < 60


def test_duration_is_derived_from_timestamps(client: TestClient) -> None:
    got = post(
        client,
        {
            "model_name": "gpt2",
            "status": "completed",
            "started_at": "2026-01-01T00:00:00Z",
            "completed_at": "2026-01-01T00:01:30.5Z",
        },
    )
    assert got["duration"] == pytest.approx(90.5)
    assert got["progress"] == 1.0


def test_duration_sent_is_kept(client: TestClient) -> None:
    got = post(
        client,
        {
            "model_name": "gpt2",
            "status": "completed",
            "started_at": "2026-01-01T00:00:00Z",
            "completed_at": "2026-01-01T00:01:00Z",
            "duration": 12.0,
        },
    )
    assert got["duration"] == 12.0


def test_finished_task_without_start_started_duration_before_completion(
    client: TestClient,
) -> None:
    got = post(
        client, {"model_name": "gpt2", "completed_at": "2026-01-01T00:01:00Z", "duration": 20.0}
    )
    assert got["status"] == "completed"
    assert instant(got["started_at"]) == datetime(2026, 1, 1, 0, 0, 40, tzinfo=UTC)
    assert got["duration"] == 20.0


def test_completed_before_started_is_422(client: TestClient) -> None:
    response = client.post(
        f"{DB}/tasks",
        json={
            "model_name": "gpt2",
            "started_at": "2026-01-01T00:01:00Z",
            "completed_at": "2026-01-01T00:00:00Z",
        },
    )
    assert response.status_code == 422
    post(client, {"task_id": "t", "model_name": "gpt2", "started_at": "2026-01-01T00:01:00Z"})
    response = client.patch(f"{DB}/task/t", json={"completed_at": "2026-01-01T00:00:00Z"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_timestamps"
    assert get_task(client, "t")["completed_at"] is None


def test_metrics_without_timestamp_take_the_task_time_so_reposts_are_identical(
    client: TestClient,
) -> None:
    doc = {
        "task_id": "t",
        "model_name": "gpt2",
        "started_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:00:10Z",
        "metrics": [{"name": "tokens_per_sec", "value": 3.0}],
    }
    first = post(client, doc)
    second = post(client, doc)
    assert first["metrics"] == second["metrics"]
    assert instant(first["metrics"][0]["timestamp"]) == datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)


def test_reposting_a_terminal_task_keeps_its_completion_time(client: TestClient) -> None:
    doc = {"task_id": "t", "model_name": "gpt2", "status": "error", "error": "boom"}
    first = post(client, doc)
    second = post(client, doc)
    assert first["completed_at"] == second["completed_at"]
    assert first["duration"] == second["duration"]


def test_reposting_with_an_invalid_transition_is_409(client: TestClient) -> None:
    post(client, {"task_id": "t", "model_name": "gpt2", "status": "cancelled"})
    response = client.post(
        f"{DB}/tasks", json={"task_id": "t", "model_name": "gpt2", "status": "running"}
    )
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"
    assert get_task(client, "t")["status"] == "cancelled"


# --- PATCH -----------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_sent(client: TestClient) -> None:
    post(client, full_document(status="running", completed_at=None, progress=0.5))
    before = get_task(client, "task-1")
    response = client.patch(
        f"{DB}/task/task-1", json={"progress": 0.75, "current_step": "compile check"}
    )
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["progress"] == 0.75 and after["current_step"] == "compile check"
    unchanged = {k: v for k, v in before.items() if k not in {"progress", "current_step"}}
    assert {k: after[k] for k in unchanged} == unchanged
    assert get_task(client, "task-1") == after


def test_patch_to_a_terminal_status_sets_completion(client: TestClient) -> None:
    post(client, {"task_id": "t", "model_name": "gpt2", "status": "running"})
    got = client.patch(f"{DB}/task/t", json={"status": "completed"}).json()
    assert got["status"] == "completed"
    assert got["progress"] == 1.0
    assert got["completed_at"] is not None
    assert got["duration"] is not None and got["duration"] >= 0


def test_patch_timestamps_derive_duration(client: TestClient) -> None:
    post(client, {"task_id": "t", "model_name": "gpt2", "started_at": "2026-01-01T00:00:00Z"})
    got = client.patch(f"{DB}/task/t", json={"completed_at": "2026-01-01T00:00:05Z"}).json()
    assert got["duration"] == 5.0


@pytest.mark.parametrize(
    ("current", "new"),
    [("running", "queued"), ("running", "initializing"), ("queued", "initializing")],
)
def test_backward_transition_is_409_with_detail_and_code(
    client: TestClient, current: str, new: str
) -> None:
    post(client, {"task_id": "t", "model_name": "gpt2", "status": current})
    response = client.patch(f"{DB}/task/t", json={"status": new})
    assert response.status_code == 409
    body = response.json()
    assert set(body) == {"detail", "code"}
    assert body["code"] == "invalid_transition" and current in body["detail"]
    assert get_task(client, "t")["status"] == current


@pytest.mark.parametrize("terminal", ["completed", "error", "cancelled"])
@pytest.mark.parametrize("new", ["initializing", "queued", "running", "completed", "error"])
def test_terminal_statuses_are_final(client: TestClient, terminal: str, new: str) -> None:
    post(client, {"task_id": "t", "model_name": "gpt2", "status": terminal})
    before = get_task(client, "t")
    response = client.patch(f"{DB}/task/t", json={"status": new})
    if new == terminal:
        assert response.status_code == 200
        assert response.json() == before
    else:
        assert response.status_code == 409
        assert get_task(client, "t") == before


def test_forward_transitions_are_allowed(client: TestClient) -> None:
    post(client, {"task_id": "t", "model_name": "gpt2"})
    for status in ("queued", "running", "running", "error"):
        response = client.patch(f"{DB}/task/t", json={"status": status})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status


# --- steps, metrics, tags --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["render/template one", "a b/c d/e", "plain"])
def test_put_step_accepts_names_with_slashes_and_spaces(client: TestClient, name: str) -> None:
    post(client, {"task_id": "t", "model_name": "gpt2"})
    body = {
        "status": "running",
        "progress": 0.5,
        "started_at": "2026-01-01T00:00:00Z",
    }
    response = client.put(f"{DB}/task/t/steps/{name}", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["step_name"] == name
    done = {**body, "status": "completed", "progress": 1.0, "completed_at": "2026-01-01T00:00:03Z"}
    response = client.put(f"{DB}/task/t/steps/{name}", json=done)
    assert response.json()["duration"] == 3.0
    steps = get_task(client, "t")["steps"]
    assert [(s["step_name"], s["status"], s["duration"]) for s in steps] == [
        (name, "completed", 3.0)
    ]


def test_put_step_on_a_missing_task_is_404(client: TestClient) -> None:
    response = client.put(f"{DB}/task/nope/steps/a", json={"status": "running"})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_post_metrics_appends_to_the_series(client: TestClient) -> None:
    post(client, full_document())
    points = [
        {"name": "render_ms", "value": 1.0, "unit": "ms", "hardware": "cpu"},
        {"name": "memory_mb", "value": 512.0, "unit": "MB", "timestamp": "2026-03-01T08:00:09Z"},
    ]
    response = client.post(f"{DB}/task/task-1/metrics", json=points)
    assert response.status_code == 201
    assert response.json() == {"added": 2}
    metrics = get_task(client, "task-1")["metrics"]
    assert len(metrics) == 4
    assert {m["name"] for m in metrics} == {"render_ms", "memory_mb"}
    assert all(instant(m["timestamp"]) is not None for m in metrics)


def test_put_tags_replaces_and_merge_keeps_the_others(client: TestClient) -> None:
    post(client, full_document())
    response = client.put(f"{DB}/task/task-1/tags", json={"team": "vision", "new": "1"})
    assert response.status_code == 200
    assert response.json() == {"team": "vision", "new": "1"}
    response = client.put(f"{DB}/task/task-1/tags?merge=true", json={"extra": "x", "new": "2"})
    assert response.json() == {"team": "vision", "new": "2", "extra": "x"}
    assert get_task(client, "task-1")["tags"] == {"team": "vision", "new": "2", "extra": "x"}
    assert client.put(f"{DB}/task/task-1/tags", json={}).json() == {}


# --- complete --------------------------------------------------------------------------------


def test_complete_records_output_file_and_architecture(client: TestClient) -> None:
    post(
        client,
        {
            "task_id": "t",
            "model_name": "vit",
            "status": "running",
            "started_at": "2026-01-01T00:00:00Z",
        },
    )
    response = client.post(
        f"{DB}/task/t/complete",
        json={
            "output_file": "generated/test_vit.py",
            "architecture": "vision",
            "completed_at": "2026-01-01T00:00:07Z",
        },
    )
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["status"] == "completed"
    assert got["output_file"] == "generated/test_vit.py"
    assert got["architecture"] == "vision"
    assert got["duration"] == 7.0 and got["progress"] == 1.0
    assert get_task(client, "t") == got


def test_complete_without_a_body_completes(client: TestClient) -> None:
    post(client, {"task_id": "t", "model_name": "vit", "status": "running"})
    got = client.post(f"{DB}/task/t/complete").json()
    assert got["status"] == "completed" and got["completed_at"] is not None


def test_complete_with_error_keeps_the_error(client: TestClient) -> None:
    post(client, {"task_id": "t", "model_name": "vit", "status": "running"})
    got = client.post(f"{DB}/task/t/complete", json={"status": "error", "error": "boom"}).json()
    assert (got["status"], got["error"]) == ("error", "boom")


def test_completing_a_cancelled_task_is_409(client: TestClient) -> None:
    post(client, {"task_id": "t", "model_name": "vit", "status": "cancelled"})
    before = get_task(client, "t")
    response = client.post(f"{DB}/task/t/complete", json={"output_file": "x.py"})
    assert response.status_code == 409
    assert set(response.json()) == {"detail", "code"}
    assert get_task(client, "t") == before


def test_completing_twice_with_the_same_status_is_200_unchanged(client: TestClient) -> None:
    post(client, {"task_id": "t", "model_name": "vit", "status": "running"})
    first = client.post(f"{DB}/task/t/complete", json={"output_file": "a.py"})
    second = client.post(f"{DB}/task/t/complete", json={"output_file": "b.py"})
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.json()["output_file"] == "a.py"


def test_complete_with_a_non_terminal_status_is_422(client: TestClient) -> None:
    post(client, {"task_id": "t", "model_name": "vit", "status": "running"})
    response = client.post(f"{DB}/task/t/complete", json={"status": "running"})
    assert response.status_code == 422
    assert get_task(client, "t")["status"] == "running"


def test_complete_missing_task_is_404(client: TestClient) -> None:
    assert client.post(f"{DB}/task/none/complete").status_code == 404


def test_started_now_tasks_report_elapsed_time(client: TestClient) -> None:
    started = datetime.now(UTC) - timedelta(seconds=30)
    post(client, {"task_id": "t", "model_name": "vit", "started_at": started.isoformat()})
    got = client.post(f"{DB}/task/t/complete").json()
    assert 29 <= got["duration"] < 120


def test_table_counts_reads_a_closed_database(tmp_path: Path, settings: Settings) -> None:
    assert table_counts(settings) == dict.fromkeys((m.__tablename__ for m in GENERATOR_TABLES), 0)
