"""Partial recording routes: PATCH, steps, metrics, tags, artifacts, results, cases, complete,
batches."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.components.test_suite.support import B, app_table_counts, instant

T0 = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def make_run(client: TestClient, run_id: str = "r1", **fields: Any) -> dict[str, Any]:
    body = {
        "run_id": run_id,
        "model_name": "gpt2",
        "status": "running",
        "started_at": T0.isoformat(),
        **fields,
    }
    response = client.post(f"{B}/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def get_run(client: TestClient, run_id: str = "r1") -> dict[str, Any]:
    response = client.get(f"{B}/run/{run_id}")
    assert response.status_code == 200, response.text
    return response.json()


# --- PATCH -----------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_sent(client: TestClient) -> None:
    before = make_run(client, tags={"a": "1"}, timeout=30, creator="me")
    response = client.patch(f"{B}/run/r1", json={"current_step": "loading", "progress": 0.25})
    assert response.status_code == 200
    after = response.json()
    assert after["current_step"] == "loading" and after["progress"] == 0.25
    unchanged = {k: v for k, v in before.items() if k not in {"current_step", "progress"}}
    assert {k: after[k] for k in unchanged} == unchanged


def test_patch_to_a_terminal_status_closes_the_run(client: TestClient) -> None:
    make_run(client)
    end = T0 + timedelta(seconds=42)
    got = client.patch(
        f"{B}/run/r1", json={"status": "completed", "completed_at": end.isoformat()}
    ).json()
    assert got["status"] == "completed" and got["progress"] == 1.0
    assert instant(got["completed_at"]) == end and got["duration"] == 42.0


def test_patch_to_error_without_completed_at_takes_now(client: TestClient) -> None:
    make_run(client, started_at=(datetime.now(UTC) - timedelta(seconds=5)).isoformat())
    got = client.patch(f"{B}/run/r1", json={"status": "error", "error": "boom"}).json()
    assert got["status"] == "error" and got["error"] == "boom"
    assert got["progress"] == 0.0
    assert 4.0 <= got["duration"] < 60
    assert abs((instant(got["completed_at"]) - datetime.now(UTC)).total_seconds()) < 60


def test_patch_of_completed_at_alone_rederives_the_duration(client: TestClient) -> None:
    make_run(client, status="completed", completed_at=(T0 + timedelta(seconds=10)).isoformat())
    got = client.patch(
        f"{B}/run/r1", json={"completed_at": (T0 + timedelta(seconds=25)).isoformat()}
    ).json()
    assert got["duration"] == 25.0


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("running", "queued"),
        ("running", "initializing"),
        ("queued", "initializing"),
        ("completed", "running"),
        ("completed", "error"),
        ("error", "completed"),
        ("timeout", "cancelled"),
        ("cancelled", "completed"),
    ],
)
def test_invalid_transition_is_409_with_a_code(client: TestClient, current: str, new: str) -> None:
    make_run(client, status=current)
    before = get_run(client)
    response = client.patch(f"{B}/run/r1", json={"status": new})
    assert response.status_code == 409
    body = response.json()
    assert set(body) == {"detail", "code"} and body["code"] == "invalid_transition"
    assert current in body["detail"] and new in body["detail"]
    assert get_run(client) == before


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("initializing", "queued"),
        ("queued", "running"),
        ("initializing", "running"),
        ("running", "completed"),
        ("running", "timeout"),
        ("queued", "cancelled"),
        ("initializing", "error"),
    ],
)
def test_valid_transition_is_accepted(client: TestClient, current: str, new: str) -> None:
    make_run(client, status=current)
    response = client.patch(f"{B}/run/r1", json={"status": new})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == new


@pytest.mark.parametrize("status", ["completed", "error", "timeout", "cancelled"])
def test_terminal_status_sent_again_changes_nothing(client: TestClient, status: str) -> None:
    make_run(client)
    first = client.patch(f"{B}/run/r1", json={"status": status}).json()
    time.sleep(0.01)
    second = client.patch(f"{B}/run/r1", json={"status": status})
    assert second.status_code == 200 and second.json() == first


@pytest.mark.parametrize("field", ["model_name", "hardware", "status", "progress"])
def test_patch_with_null_for_a_required_field_is_422(client: TestClient, field: str) -> None:
    before = make_run(client)
    response = client.patch(f"{B}/run/r1", json={field: None})
    assert response.status_code == 422
    assert field in str(response.json()["detail"])
    assert get_run(client) == before


def test_patch_with_null_for_an_optional_field_clears_it(client: TestClient) -> None:
    make_run(client, error="x", current_step="s", timeout=5)
    got = client.patch(f"{B}/run/r1", json={"error": None, "current_step": None}).json()
    assert got["error"] is None and got["current_step"] is None and got["timeout"] == 5


def test_completed_before_started_is_422_everywhere(client: TestClient) -> None:
    early = (T0 - timedelta(seconds=1)).isoformat()
    response = client.post(
        f"{B}/runs", json={"model_name": "m", "started_at": T0.isoformat(), "completed_at": early}
    )
    assert response.status_code == 422
    make_run(client)
    response = client.patch(f"{B}/run/r1", json={"completed_at": early})
    assert response.status_code == 422 and response.json()["code"] == "invalid_timestamps"
    response = client.patch(
        f"{B}/run/r1",
        json={"started_at": (T0 + timedelta(1)).isoformat(), "completed_at": T0.isoformat()},
    )
    assert response.status_code == 422
    response = client.post(f"{B}/run/r1/complete", json={"completed_at": early})
    assert response.status_code == 422 and response.json()["code"] == "invalid_timestamps"
    response = client.put(
        f"{B}/run/r1/steps/s", json={"started_at": T0.isoformat(), "completed_at": early}
    )
    assert response.status_code == 422
    response = client.post(
        f"{B}/runs",
        json={
            "run_id": "r2",
            "model_name": "m",
            "steps": [{"step_name": "a", "started_at": T0.isoformat(), "completed_at": early}],
        },
    )
    assert response.status_code == 422
    assert get_run(client)["status"] == "running"
    assert client.get(f"{B}/run/r2").status_code == 404


# --- steps -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "load",
        "tests/test_x.py::test_a[cpu-fp16]",
        "with spaces and ünïcödé",
        "a/b/c",
        "100% done & ?#",
    ],
)
def test_put_step_takes_any_url_encoded_name(client: TestClient, name: str) -> None:
    # (TestClient decodes paths twice, so "%41" is checked against uvicorn in tests/e2e.)
    make_run(client)
    response = client.put(
        f"{B}/run/r1/steps/{quote(name, safe='')}",
        json={"status": "running", "progress": 0.5, "started_at": T0.isoformat()},
    )
    assert response.status_code == 200, response.text
    assert response.json()["step_name"] == name
    assert [s["step_name"] for s in get_run(client)["steps"]] == [name]


def test_put_step_updates_in_place_and_derives_duration(client: TestClient) -> None:
    make_run(client)
    path = f"{B}/run/r1/steps/{quote('tests/a.py::test_x', safe='')}"
    client.put(f"{B}/run/r1/steps/first", json={"status": "completed"})
    client.put(path, json={"status": "running", "started_at": T0.isoformat()})
    done = client.put(
        path,
        json={
            "status": "completed",
            "progress": 1.0,
            "started_at": T0.isoformat(),
            "completed_at": (T0 + timedelta(milliseconds=1500)).isoformat(),
        },
    ).json()
    assert done["duration"] == 1.5 and done["status"] == "completed"
    steps = get_run(client)["steps"]
    assert [s["step_name"] for s in steps] == ["first", "tests/a.py::test_x"]
    assert app_table_counts(client)["test_run_steps"] == 2


def test_put_step_answers_the_step_as_it_reads_back(client: TestClient) -> None:
    """The answer is built from what was written (no read-back): it must equal a later read."""
    make_run(client)
    client.put(f"{B}/run/r1/steps/a", json={"status": "running", "progress": 0.25})
    sent = {
        "status": "error",
        "progress": 0.5,
        "started_at": "2026-03-02T11:30:00.5+02:00",  # another offset: answered in UTC
        "completed_at": "2026-03-02T09:30:02",  # naive: taken as UTC
        "error": "AssertionError: ünïcödé",
    }
    answers = [client.put(f"{B}/run/r1/steps/a", json=sent).json()]
    answers.append(client.put(f"{B}/run/r1/steps/b", json={}).json())  # every default
    assert answers == get_run(client)["steps"]
    assert answers[0]["started_at"] == "2026-03-02T09:30:00.500000Z"
    assert answers[0]["duration"] == 1.5


def test_put_step_with_an_empty_name_is_refused(client: TestClient) -> None:
    make_run(client)
    for path in (f"{B}/run/r1/steps/", f"{B}/run/r1/steps"):
        response = client.put(path, json={"status": "completed"})
        assert response.status_code in (404, 405, 422), (path, response.status_code)
    assert get_run(client)["steps"] == []


def test_put_step_of_a_missing_run_is_404(client: TestClient) -> None:
    response = client.put(f"{B}/run/nope/steps/a", json={})
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert app_table_counts(client)["test_run_steps"] == 0


# --- metrics, tags, artifacts ----------------------------------------------------------------


def test_post_metrics_appends_points(client: TestClient) -> None:
    make_run(client)
    at = (T0 + timedelta(seconds=3)).isoformat()
    first = client.post(
        f"{B}/run/r1/metrics",
        json=[
            {"name": "latency_ms", "value": 3.5, "unit": "ms", "hardware": "cpu", "timestamp": at}
        ],
    )
    assert first.status_code == 201 and first.json() == {"added": 1}
    second = client.post(f"{B}/run/r1/metrics", json=[{"name": "latency_ms", "value": 4.5}])
    assert second.json() == {"added": 1}
    metrics = get_run(client)["metrics"]
    assert [(m["name"], m["value"], m["hardware"]) for m in metrics] == [
        ("latency_ms", 3.5, "cpu"),
        ("latency_ms", 4.5, None),
    ]
    # Live points sent without a time are taken when they arrive.
    assert abs((instant(metrics[1]["timestamp"]) - datetime.now(UTC)).total_seconds()) < 60


def test_put_tags_replaces_them_and_merge_keeps_the_others(client: TestClient) -> None:
    make_run(client, tags={"a": "1", "b": "2"})
    replaced = client.put(f"{B}/run/r1/tags", json={"b": "20", "c": "3"})
    assert replaced.status_code == 200 and replaced.json() == {"b": "20", "c": "3"}
    merged = client.put(f"{B}/run/r1/tags", params={"merge": "true"}, json={"a": "1", "c": "30"})
    assert merged.json() == {"a": "1", "b": "20", "c": "30"}
    assert get_run(client)["tags"] == {"a": "1", "b": "20", "c": "30"}
    assert app_table_counts(client)["test_run_tags"] == 3


def test_post_artifacts_upserts_by_path(client: TestClient) -> None:
    make_run(client)
    first = client.post(
        f"{B}/run/r1/artifacts",
        json=[{"artifact_type": "log", "artifact_path": "/x/a.log", "description": "one"}],
    )
    assert first.status_code == 201
    time.sleep(0.01)
    second = client.post(
        f"{B}/run/r1/artifacts",
        json=[
            {"artifact_type": "text", "artifact_path": "/x/a.log", "description": "two"},
            {"artifact_type": "xml", "artifact_path": "/x/junit.xml"},
        ],
    ).json()
    assert [(a["artifact_type"], a["artifact_path"], a["description"]) for a in second] == [
        ("text", "/x/a.log", "two"),
        ("xml", "/x/junit.xml", ""),
    ]
    assert second[0]["created_at"] == first.json()[0]["created_at"]
    assert app_table_counts(client)["test_run_artifacts"] == 2


# --- results, cases, complete ----------------------------------------------------------------


def test_put_results_derives_counts_and_replaces_device_metrics(client: TestClient) -> None:
    make_run(client)
    body = {
        "test_details": [{"name": "a", "status": "passed"}, {"name": "b", "status": "failed"}],
        "performance_metrics": {"cpu": {"latency_ms": 5.0}},
        "note": "first",
    }
    client.put(f"{B}/run/r1/results", json=body)
    body["performance_metrics"] = {"cpu": {"latency_ms": 6.0}}
    body["note"] = "second"
    got = client.put(f"{B}/run/r1/results", json=body).json()
    assert (got["tests_passed"], got["tests_failed"], got["tests_skipped"]) == (1, 1, 0)
    assert got["results"]["note"] == "second"
    assert got["results"]["performance_metrics"] == {"cpu": {"latency_ms": 6.0}}
    assert [(m["name"], m["value"]) for m in got["metrics"]] == [("latency_ms", 6.0)]
    assert app_table_counts(client)["test_run_cases"] == 2


def test_cases_are_appended_and_complete_counts_them(client: TestClient) -> None:
    make_run(client)
    for status in ("passed", "passed", "failed", "skipped", "error", "xpassed"):
        response = client.post(
            f"{B}/run/r1/cases", json=[{"name": f"t_{status}", "status": status}]
        )
        assert response.status_code == 201 and response.json() == {"added": 1}
    got = client.post(f"{B}/run/r1/complete", json={}).json()
    assert got["status"] == "completed" and got["progress"] == 1.0
    assert (got["tests_passed"], got["tests_failed"], got["tests_skipped"]) == (3, 2, 1)
    assert [c["name"] for c in got["results"]["test_details"]] == [
        "t_passed",
        "t_passed",
        "t_failed",
        "t_skipped",
        "t_error",
        "t_xpassed",
    ]


def test_complete_without_a_body_completes(client: TestClient) -> None:
    make_run(client)
    response = client.post(f"{B}/run/r1/complete")
    assert response.status_code == 200 and response.json()["status"] == "completed"


def test_complete_twice_with_the_same_status_is_200_unchanged(client: TestClient) -> None:
    make_run(client)
    first = client.post(f"{B}/run/r1/complete", json={"status": "error", "error": "x"}).json()
    time.sleep(0.01)
    second = client.post(f"{B}/run/r1/complete", json={"status": "error", "error": "y"})
    assert second.status_code == 200 and second.json() == first


def test_cancelled_run_cannot_be_completed(client: TestClient) -> None:
    make_run(client)
    client.post(f"{B}/run/r1/complete", json={"status": "cancelled"})
    response = client.post(f"{B}/run/r1/complete", json={"status": "completed"})
    assert response.status_code == 409 and response.json()["code"] == "invalid_transition"
    assert get_run(client)["status"] == "cancelled"


def test_complete_with_a_non_terminal_status_is_422(client: TestClient) -> None:
    make_run(client)
    response = client.post(f"{B}/run/r1/complete", json={"status": "running"})
    assert response.status_code == 422
    assert get_run(client)["status"] == "running"


def test_complete_with_results_uses_them(client: TestClient) -> None:
    make_run(client)
    got = client.post(
        f"{B}/run/r1/complete",
        json={
            "status": "completed",
            "completed_at": (T0 + timedelta(seconds=9)).isoformat(),
            "results": {"tests_passed": 4, "tests_failed": 1},
        },
    ).json()
    assert (got["tests_passed"], got["tests_failed"], got["duration"]) == (4, 1, 9.0)


# --- batches ---------------------------------------------------------------------------------


def test_create_batch_with_runs_and_missing_run_is_404(client: TestClient) -> None:
    make_run(client, "a")
    make_run(client, "b")
    response = client.post(
        f"{B}/batches",
        json={"batch_id": "b1", "description": "d", "run_ids": ["a", "b", "zz", "yy"]},
    )
    assert response.status_code == 404
    assert response.json()["code"] == "not_found" and response.json()["missing"] == ["yy", "zz"]
    assert client.get(f"{B}/batch/b1").status_code == 404
    created = client.post(
        f"{B}/batches", json={"batch_id": "b1", "description": "d", "run_ids": ["a", "b", "a"]}
    )
    assert created.status_code == 201
    batch = created.json()
    assert batch["run_count"] == 2 and batch["description"] == "d"
    assert [r["run_id"] for r in batch["runs"]] == ["a", "b"]
    again = client.post(f"{B}/batches", json={"batch_id": "b1"})
    assert again.status_code == 409


def test_batch_id_is_generated_when_absent(client: TestClient) -> None:
    batch = client.post(f"{B}/batches", json={"description": "x"}).json()
    assert len(batch["batch_id"]) == 32 and batch["status"] == "initializing"
    assert batch["counts"] == {"total": 0, "by_status": {}} and batch["runs"] == []


def test_put_run_into_batch_is_idempotent(client: TestClient) -> None:
    make_run(client, "a")
    client.post(f"{B}/batches", json={"batch_id": "b1"})
    for _ in range(2):
        response = client.put(f"{B}/batch/b1/runs/a")
        assert response.status_code == 200
    assert response.json()["run_count"] == 1
    assert app_table_counts(client)["test_run_batch"] == 1
    assert get_run(client, "a")["batch_ids"] == ["b1"]
    assert client.put(f"{B}/batch/b1/runs/zz").status_code == 404
    assert client.put(f"{B}/batch/zz/runs/a").status_code == 404


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([], "initializing"),
        (["initializing", "initializing"], "initializing"),
        (["initializing", "running"], "running"),
        (["queued", "completed"], "running"),
        (["completed", "completed"], "completed"),
        (["completed", "error"], "partial"),
        (["completed", "cancelled", "timeout"], "partial"),
        (["error", "timeout"], "error"),
        (["error", "cancelled"], "error"),
        (["cancelled", "cancelled"], "cancelled"),
    ],
)
def test_batch_status_follows_its_members(
    client: TestClient, members: list[str], expected: str
) -> None:
    for i, status in enumerate(members):
        make_run(client, f"m{i}", status=status)
    client.post(
        f"{B}/batches", json={"batch_id": "b", "run_ids": [f"m{i}" for i in range(len(members))]}
    )
    batch = client.get(f"{B}/batch/b").json()
    assert batch["status"] == expected
    by_status: dict[str, int] = {}
    for status in members:
        by_status[status] = by_status.get(status, 0) + 1
    assert batch["counts"] == {"total": len(members), "by_status": by_status}


def test_batch_status_follows_a_member_as_it_changes(client: TestClient) -> None:
    make_run(client, "a", status="initializing")
    make_run(client, "b", status="initializing")
    client.post(f"{B}/batches", json={"batch_id": "b", "run_ids": ["a", "b"]})
    steps = [
        ("a", {"status": "running"}, "running"),
        ("a", {"status": "completed", "completed_at": (T0 + timedelta(60)).isoformat()}, "running"),
        (
            "b",
            {"status": "error", "completed_at": (T0 + timedelta(seconds=90)).isoformat()},
            "partial",
        ),
    ]
    for run_id, body, expected in steps:
        assert client.patch(f"{B}/run/{run_id}", json=body).status_code == 200
        assert client.get(f"{B}/batch/b").json()["status"] == expected
    batch = client.get(f"{B}/batch/b").json()
    assert instant(batch["started_at"]) == T0
    assert instant(batch["completed_at"]) == T0 + timedelta(60)
    assert batch["duration"] == 60 * 86400.0
    # A member deleted: the batch follows the one left.
    client.delete(f"{B}/run/b")
    batch = client.get(f"{B}/batch/b").json()
    assert batch["status"] == "completed" and batch["run_count"] == 1


def test_list_batches_filters_by_status_and_counts(client: TestClient) -> None:
    make_run(client, "done", status="completed")
    make_run(client, "busy", status="running")
    client.post(f"{B}/batches", json={"batch_id": "b-done", "run_ids": ["done"]})
    client.post(f"{B}/batches", json={"batch_id": "b-busy", "run_ids": ["busy"]})
    client.post(f"{B}/batches", json={"batch_id": "b-empty"})
    everything = client.get(f"{B}/batches")
    assert everything.headers["X-Total-Count"] == "3"
    assert {b["batch_id"] for b in everything.json()} == {"b-done", "b-busy", "b-empty"}
    done = client.get(f"{B}/batches", params={"status": "completed"})
    assert done.headers["X-Total-Count"] == "1"
    assert [b["batch_id"] for b in done.json()] == ["b-done"]
    assert done.json()[0]["counts"] == {"total": 1, "by_status": {"completed": 1}}
    page = client.get(f"{B}/batches", params={"limit": 1, "offset": 1})
    assert page.headers["X-Total-Count"] == "3" and len(page.json()) == 1
    assert client.get(f"{B}/batches", params={"status": "bogus"}).status_code == 422


def test_get_batch_lists_member_runs_with_counts(client: TestClient) -> None:
    make_run(
        client,
        "a",
        status="completed",
        completed_at=(T0 + timedelta(seconds=5)).isoformat(),
        results={"tests_passed": 3, "tests_failed": 1},
    )
    client.post(f"{B}/batches", json={"batch_id": "b", "run_ids": ["a"], "creator": "ci"})
    batch = client.get(f"{B}/batch/b").json()
    assert batch["creator"] == "ci" and batch["status"] == "completed"
    (run,) = batch["runs"]
    assert run["run_id"] == "a" and run["model_name"] == "gpt2" and run["duration"] == 5.0
    assert (run["tests_passed"], run["tests_failed"]) == (3, 1)
