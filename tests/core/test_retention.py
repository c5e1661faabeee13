"""Retention: old ended runs and tasks go with their child rows; pinned, recent, live ones stay."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.components.test_suite.maintenance import SPEC as RUN_SPEC
from app.core import retention
from app.core.db import DatabaseRegistry
from app.main import create_app
from tests.support import make_settings

DB = "/api/test/db"
GEN = "/api/generator/db"
OLD = (datetime.now(UTC) - timedelta(days=100)).isoformat()
NEW = (datetime.now(UTC) - timedelta(days=1)).isoformat()

RUN_CHILDREN = {
    "test_run_results": "run_id",
    "test_run_cases": "run_id",
    "test_run_steps": "run_id",
    "test_run_metrics": "run_id",
    "test_run_tags": "run_id",
    "test_run_batch": "run_id",
    "test_run_artifacts": "run_id",
}
TASK_CHILDREN = {
    "generator_task_steps": "task_id",
    "generator_task_metrics": "task_id",
    "generator_task_tags": "task_id",
}


def run_doc(run_id: str, started: str, **extra: object) -> dict[str, object]:
    """Return a run with one row in every child table."""
    return {
        "run_id": run_id,
        "model_name": "bert",
        "hardware": ["cpu"],
        "status": "completed",
        "started_at": started,
        "results": {
            "tests_passed": 2,
            "test_details": [
                {"name": f"{run_id}::a", "status": "passed"},
                {"name": f"{run_id}::b", "status": "passed"},
            ],
        },
        "steps": [{"step_name": "load", "status": "completed"}],
        "metrics": [{"name": "latency", "value": 1.5}],
        "tags": {"team": "x"},
        "artifacts": [{"artifact_type": "log", "artifact_path": f"/tmp/{run_id}.log"}],
        **extra,
    }


def task_doc(task_id: str, started: str, **extra: object) -> dict[str, object]:
    """Return a generator task with a step, a metric and a tag."""
    return {
        "task_id": task_id,
        "model_name": "bert",
        "hardware": ["cpu"],
        "status": "completed",
        "started_at": started,
        "steps": [{"step_name": "render", "status": "completed"}],
        "metrics": [{"name": "render_ms", "value": 3.0}],
        "tags": {"team": "x"},
        **extra,
    }


@pytest.fixture
def client(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    """An open app on fresh copies of the databases."""
    with TestClient(create_app(make_settings(tmp_path, template_dbs))) as test_client:
        yield test_client


def seed_runs(client: TestClient) -> None:
    """Old, pinned, recent and still-running runs; an old batch and a mixed batch."""
    for batch in ("b-old", "b-mixed"):
        assert client.post(f"{DB}/batches", json={"batch_id": batch}).status_code == 201
    for run_id, doc in {
        "old1": run_doc("old1", OLD, batch_id="b-old"),
        "old2": run_doc("old2", OLD, batch_id="b-mixed"),
        "old3": run_doc("old3", OLD),
        "pinned": run_doc("pinned", OLD, tags={"pinned": "release 1.0"}),
        "recent": run_doc("recent", NEW, batch_id="b-mixed"),
        "live": run_doc("live", OLD, status="running"),
    }.items():
        answer = client.post(f"{DB}/runs", json=doc)
        assert answer.status_code == 201, (run_id, answer.text)


def orphans(path: Path, tables: dict[str, str], owner: str, key: str) -> dict[str, int]:
    """Return, per child table, the rows whose owner is gone."""
    registry = DatabaseRegistry()
    try:
        with registry.get(f"duckdb:///{path}").engine.connect() as conn:
            return {
                table: int(
                    conn.execute(
                        text(
                            f"SELECT count(*) FROM {table} WHERE {col} NOT IN "
                            f"(SELECT {key} FROM {owner})"
                        )
                    ).scalar_one()
                )
                for table, col in tables.items()
            }
    finally:
        registry.dispose()


def test_dry_run_counts_what_retention_then_deletes(client: TestClient) -> None:
    seed_runs(client)
    body = {"older_than_days": 30, "dry_run": True}
    preview = client.post(f"{DB}/retention", json=body)
    assert preview.status_code == 200, preview.text
    counts = preview.json()["counts"]
    assert preview.json()["keep_tags"] == ["pinned"]
    # old1, old2, old3: each one row of results, steps, metrics, tags, artifacts, two cases;
    # two batch links (old1, old2); b-old loses its only member, b-mixed keeps `recent`.
    assert counts == {
        "test_run_results": 3,
        "test_run_cases": 6,
        "test_run_steps": 3,
        "test_run_metrics": 3,
        "test_run_tags": 3,
        "test_run_batch": 2,
        "test_run_artifacts": 3,
        "test_runs": 3,
        "batch_test_runs": 1,
    }
    assert client.get(f"{DB}/run/old1").status_code == 200  # a dry run deletes nothing

    done = client.post(f"{DB}/retention", json={"older_than_days": 30})
    assert done.status_code == 200, done.text
    assert done.json()["counts"] == counts
    assert done.json()["dry_run"] is False
    for gone in ("old1", "old2", "old3"):
        assert client.get(f"{DB}/run/{gone}").status_code == 404
    for kept in ("pinned", "recent", "live"):
        assert client.get(f"{DB}/run/{kept}").status_code == 200, kept
    assert client.get(f"{DB}/batch/b-old").status_code == 404
    assert client.get(f"{DB}/batch/b-mixed").status_code == 200
    path = Path(client.app.state.ctx.database("test_suite").url.removeprefix("duckdb:///"))  # type: ignore[attr-defined]
    assert orphans(path, RUN_CHILDREN, "test_runs", "run_id") == dict.fromkeys(RUN_CHILDREN, 0)
    again = client.post(f"{DB}/retention", json={"older_than_days": 30}).json()["counts"]
    assert set(again.values()) == {0}


def test_keep_tags_can_be_emptied_or_changed(client: TestClient) -> None:
    seed_runs(client)
    body = {"older_than_days": 30, "keep_tags": [], "dry_run": True}
    assert client.post(f"{DB}/retention", json=body).json()["counts"]["test_runs"] == 4
    body = {"older_than_days": 30, "keep_tags": ["pinned", "team"], "dry_run": True}
    assert client.post(f"{DB}/retention", json=body).json()["counts"]["test_runs"] == 0


def test_retention_deletes_in_bounded_batches(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(7):
        assert client.post(f"{DB}/runs", json=run_doc(f"r{i}", OLD)).status_code == 201
    db = client.app.state.ctx.database("test_suite")  # type: ignore[attr-defined]
    transactions = []
    real = db.writing

    def counted() -> object:
        transactions.append(1)
        return real()

    monkeypatch.setattr(db, "writing", counted)
    counts = retention.purge(db, RUN_SPEC, retention.cutoff_of(30), ["pinned"], batch_size=3)
    assert counts["test_runs"] == 7 and counts["test_run_cases"] == 14
    # 3 + 3 + 1 runs, one empty look, then one look for batches.
    assert len(transactions) == 5


def test_generator_retention_deletes_tasks_with_their_rows(client: TestClient) -> None:
    assert client.post(f"{GEN}/batches", json={"batch_id": "g-old"}).status_code == 201
    for task_id, doc in {
        "t-old": task_doc("t-old", OLD, batch_id="g-old"),
        "t-pinned": task_doc("t-pinned", OLD, tags={"pinned": "yes"}),
        "t-new": task_doc("t-new", NEW),
    }.items():
        answer = client.post(f"{GEN}/tasks", json=doc)
        assert answer.status_code == 201, (task_id, answer.text)
    done = client.post(f"{GEN}/retention", json={"older_than_days": 30})
    assert done.status_code == 200, done.text
    assert done.json()["counts"] == {
        "generator_task_steps": 1,
        "generator_task_metrics": 1,
        "generator_task_tags": 1,
        "generator_tasks": 1,
        "generator_batch_tasks": 1,
    }
    assert client.get(f"{GEN}/task/t-old").status_code == 404
    assert client.get(f"{GEN}/task/t-pinned").status_code == 200
    assert client.get(f"{GEN}/task/t-new").status_code == 200
    path = Path(client.app.state.ctx.database("generator").url.removeprefix("duckdb:///"))  # type: ignore[attr-defined]
    assert orphans(path, TASK_CHILDREN, "generator_tasks", "task_id") == dict.fromkeys(
        TASK_CHILDREN, 0
    )


def test_retention_without_days_or_setting_is_a_400(client: TestClient) -> None:
    answer = client.post(f"{DB}/retention", json={})
    assert answer.status_code == 400
    assert answer.json()["code"] == "retention_unset"
    assert "APP_TEST_RETENTION_DAYS" in answer.json()["detail"]
    assert client.post(f"{DB}/retention", json={"older_than_days": 0}).status_code == 422
    bad = client.post(f"{DB}/retention", json={"older_than_days": 5, "keep": ["x"]})
    assert bad.status_code == 422


def test_the_setting_applies_retention_periodically(
    tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    settings = make_settings(
        tmp_path, template_dbs, test_retention_days=30, retention_interval_seconds=1
    )
    with TestClient(create_app(settings)) as client:
        assert client.post(f"{DB}/runs", json=run_doc("old", OLD)).status_code == 201
        assert client.post(f"{DB}/runs", json=run_doc("keep", NEW)).status_code == 201
        deadline = time.monotonic() + 30
        while client.get(f"{DB}/run/old").status_code != 404:
            assert time.monotonic() < deadline, "the periodic retention never ran"
            time.sleep(0.2)
        assert client.get(f"{DB}/run/keep").status_code == 200
        # The setting is also the default of the route.
        assert client.post(f"{DB}/retention", json={}).json()["older_than_days"] == 30
