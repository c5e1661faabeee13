"""Generator export, import and delete: files in the export folder only, exact round trips."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from app.components.generator.models import Task, TaskMetric, TaskStep, TaskTag
from app.core.config import Settings
from app.main import create_app
from tests.components.generator.test_api_recording import full_document, table_counts
from tests.support import make_settings

DB = "/api/generator/db"


def seed(client: TestClient) -> None:
    """Record tasks with every kind of child row, in two batches."""
    docs = [
        full_document("task-1"),
        full_document(
            "task-2",
            model_name="gpt2",
            hardware=["mps"],
            status="error",
            error="line 1\nline 2 \"quoted\", 'single', commas",
            batch_id="batch-2",
            template_context=None,
            tags={"a": "1"},
        ),
        {"task_id": "task-3", "model_name": "vit", "status": "running"},
    ]
    for doc in docs:
        response = client.post(f"{DB}/tasks", json=doc)
        assert response.status_code == 201, response.text
    client.post(f"{DB}/task/task-3/metrics", json=[{"name": "m", "value": 0.1}])
    # Enough points for the bulk (Arrow) insert path, all at one time, in a deliberate order.
    stamp = "2026-03-01T00:00:00Z"
    points = [
        {"name": f"p{i % 7}", "value": float(300 - i), "timestamp": stamp} for i in range(300)
    ]
    client.post(f"{DB}/task/task-3/metrics", json=points)
    client.put(f"{DB}/task/task-3/steps/step one", json={"status": "running"})
    client.post(f"{DB}/batches", json={"batch_id": "empty", "description": "no members"})


def export(client: TestClient, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = client.post(f"{DB}/export", json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


def export_document(client: TestClient, settings: Settings, name: str) -> dict[str, Any]:
    export(client, {"filename": name, "overwrite": True})
    document: dict[str, Any] = json.loads((settings.export_dir / name).read_text())
    return document


def test_export_json_writes_the_document_into_the_export_folder(
    client: TestClient, settings: Settings
) -> None:
    seed(client)
    result = export(client, {"filename": "gen.json"})
    path = settings.export_dir.resolve() / "gen.json"
    assert result["path"] == str(path)
    assert result["format"] == "json" and result["filename"] == "gen.json"
    assert result["bytes"] == path.stat().st_size
    assert result["rows"] == {
        "generator_tasks": 3,
        "generator_task_steps": 5,
        "generator_task_metrics": 305,
        "generator_task_tags": 3,
        "generator_batch_tasks": 3,
    }
    document = json.loads(path.read_text())
    assert document["format"] == "accelerate-tracking-export"
    assert document["component"] == "generator"
    assert document["schema_revision"] == result["schema_revision"] is not None
    assert {k: len(v) for k, v in document["tables"].items()} == result["rows"]
    assert sorted(p.name for p in settings.export_dir.iterdir()) == ["gen.json"]


@pytest.mark.parametrize(
    ("flags", "tables"),
    [
        ({"include_batches": False}, {"generator_tasks", "generator_task_steps",
                                      "generator_task_metrics", "generator_task_tags"}),
        ({"include_metrics": False, "include_steps": False},
         {"generator_tasks", "generator_task_tags", "generator_batch_tasks"}),
        ({"include_tasks": False}, {"generator_batch_tasks"}),
    ],
)  # fmt: skip
def test_export_includes_only_the_tables_asked_for(
    client: TestClient, flags: dict[str, bool], tables: set[str]
) -> None:
    seed(client)
    result = export(client, {"filename": "part.json", **flags})
    assert set(result["rows"]) == tables


def read_rows(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode().splitlines() if line]
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode())))
    if fmt == "parquet":
        rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(data)).to_pylist()
        return rows
    document: dict[str, Any] = json.loads(data)
    return list(document["tables"]["generator_tasks"])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_one_table_in_each_format(client: TestClient, settings: Settings, fmt: str) -> None:
    seed(client)
    result = export(client, {"filename": f"tags.{fmt}", "table": "generator_task_tags"})
    assert result["format"] == fmt and result["rows"] == {"generator_task_tags": 3}
    rows = read_rows(fmt, (settings.export_dir / f"tags.{fmt}").read_bytes())
    assert sorted((r["task_id"], r["tag_name"], r["tag_value"]) for r in rows) == [
        ("task-1", "ci/job", "nightly 42"),
        ("task-1", "team", "nlp"),
        ("task-2", "a", "1"),
    ]
    tasks = export(client, {"filename": f"tasks.{fmt}", "format": fmt})
    assert tasks["rows"] == {"generator_tasks": 3}
    rows = read_rows(fmt, (settings.export_dir / f"tasks.{fmt}").read_bytes())
    by_id = {r["task_id"]: r for r in rows}
    assert by_id["task-2"]["error"] == "line 1\nline 2 \"quoted\", 'single', commas"
    assert set(by_id) == {"task-1", "task-2", "task-3"}


def test_export_of_an_unknown_table_is_400(client: TestClient, settings: Settings) -> None:
    response = client.post(f"{DB}/export", json={"filename": "x.csv", "table": "runs"})
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_table"
    assert list(settings.export_dir.iterdir()) == []


@pytest.mark.parametrize(
    "filename",
    [
        "../escape.json",
        "../../etc/passwd",
        "/tmp/abs.json",
        "sub/dir.json",
        "..",
        ".hidden.json",
        "a\\b.json",
        "name with space.json",
        "x" * 300,
    ],
)
def test_export_refuses_anything_but_a_bare_name(
    client: TestClient, settings: Settings, filename: str
) -> None:
    response = client.post(f"{DB}/export", json={"filename": filename})
    assert response.status_code in {400, 422}, response.text
    if response.status_code == 400:
        assert response.json()["code"] == "invalid_filename"
    assert not settings.export_dir.exists() or list(settings.export_dir.iterdir()) == []
    assert not (settings.export_dir.parent / "escape.json").exists()


def test_export_to_an_existing_file_is_409_unless_overwrite(
    client: TestClient, settings: Settings
) -> None:
    export(client, {"filename": "gen.json"})
    first = (settings.export_dir / "gen.json").read_text()
    response = client.post(f"{DB}/export", json={"filename": "gen.json"})
    assert response.status_code == 409
    assert response.json()["code"] == "file_exists"
    assert (settings.export_dir / "gen.json").read_text() == first
    client.post(f"{DB}/tasks", json={"model_name": "new"})
    result = export(client, {"filename": "gen.json", "overwrite": True})
    assert result["rows"]["generator_tasks"] == 1


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
def test_download_export_in_each_format(client: TestClient, settings: Settings, fmt: str) -> None:
    seed(client)
    response = client.get(f"{DB}/export", params={"format": fmt})
    assert response.status_code == 200, response.text
    assert f"generator-export.{fmt}" in response.headers["content-disposition"]
    rows = read_rows(fmt, response.content)
    assert {r["task_id"] for r in rows} == {"task-1", "task-2", "task-3"}
    # The temporary file is gone once the download is sent.
    assert list(settings.export_dir.iterdir()) == []


def test_download_of_one_table_and_of_an_unknown_table(
    client: TestClient, settings: Settings
) -> None:
    seed(client)
    response = client.get(
        f"{DB}/export", params={"format": "jsonl", "table": "generator_task_tags"}
    )
    assert len(read_rows("jsonl", response.content)) == 3
    response = client.get(f"{DB}/export", params={"format": "csv", "table": "nope"})
    assert response.status_code == 400
    assert list(settings.export_dir.iterdir()) == []
    assert client.get(f"{DB}/export", params={"format": "xml"}).status_code == 422


# --- import ----------------------------------------------------------------------------------


def test_export_import_export_round_trip_is_exact(
    tmp_path: Path, template_dbs: dict[str, Path], settings: Settings
) -> None:
    with TestClient(create_app(settings)) as source:
        seed(source)
        document = export_document(source, settings, "gen.json")
        details = {t: source.get(f"{DB}/task/{t}").json() for t in ("task-1", "task-2", "task-3")}
        batch = source.get(f"{DB}/batch/batch-1").json()
    other = make_settings(tmp_path / "other", template_dbs)
    with TestClient(create_app(other)) as target:
        response = target.post(f"{DB}/import", json=document)
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == document["counts"]
        again = export_document(target, other, "again.json")
        assert again["tables"] == document["tables"]
        for task_id, detail in details.items():
            assert target.get(f"{DB}/task/{task_id}").json() == detail
        assert target.get(f"{DB}/batch/batch-1").json() == batch
        # Importing the same document twice changes nothing.
        assert target.post(f"{DB}/import", json=document).status_code == 200
        assert export_document(target, other, "twice.json")["tables"] == document["tables"]
    assert table_counts(other) == document["counts"]


def test_import_over_existing_rows_restores_the_exported_state(
    client: TestClient, settings: Settings
) -> None:
    seed(client)
    document = export_document(client, settings, "gen.json")
    client.patch(f"{DB}/task/task-3", json={"status": "completed"})
    client.put(f"{DB}/task/task-1/tags", json={"changed": "yes"})
    client.post(f"{DB}/task/task-3/metrics", json=[{"name": "extra", "value": 2.0}])
    assert client.post(f"{DB}/import", json=document).status_code == 200
    after = export_document(client, settings, "after.json")
    # Metrics are replaced per task; tags and steps are upserted by key (tags added since stay).
    assert after["tables"]["generator_tasks"] == document["tables"]["generator_tasks"]
    assert after["tables"]["generator_task_metrics"] == document["tables"]["generator_task_metrics"]


def malformed(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Return invalid variants of a valid export document; each must be refused whole."""
    cases: list[tuple[str, dict[str, Any]]] = []

    def variant(name: str, change: Any) -> None:
        doc = copy.deepcopy(document)
        change(doc)
        cases.append((name, doc))

    variant("unknown table", lambda d: d["tables"].update(test_runs=[]))
    variant("wrong component", lambda d: d.update(component="test_suite"))
    variant("not an export", lambda d: d.update(format="something-else"))
    variant("tables not an object", lambda d: d.update(tables=[]))
    variant("rows not a list", lambda d: d["tables"].update(generator_tasks={"a": 1}))
    variant("row not an object", lambda d: d["tables"]["generator_tasks"].append("x"))
    variant("unknown column", lambda d: d["tables"]["generator_tasks"][0].update(colour="red"))
    variant("bad number", lambda d: d["tables"]["generator_tasks"][0].update(progress="half"))
    variant("bad timestamp", lambda d: d["tables"]["generator_tasks"][0].update(started_at="x"))
    variant("bad list", lambda d: d["tables"]["generator_tasks"][0].update(hardware="cpu"))
    variant("bad status", lambda d: d["tables"]["generator_tasks"][0].update(status="done"))
    variant("null key", lambda d: d["tables"]["generator_tasks"][0].update(task_id=None))
    variant("missing column", lambda d: d["tables"]["generator_task_metrics"][0].pop("task_id"))
    variant(
        "bad value in the last table",
        lambda d: d["tables"]["generator_batch_tasks"][-1].update(task_count="many"),
    )
    return cases


def test_malformed_imports_are_422_and_write_nothing(
    tmp_path: Path, template_dbs: dict[str, Path], settings: Settings
) -> None:
    with TestClient(create_app(settings)) as source:
        seed(source)
        document = export_document(source, settings, "gen.json")
    other = make_settings(tmp_path / "other", template_dbs)
    with TestClient(create_app(other)) as target:
        for name, doc in malformed(document):
            response = target.post(f"{DB}/import", json=doc)
            assert response.status_code == 422, (name, response.text)
            assert "detail" in response.json(), name
        assert target.get(f"{DB}/tasks").headers["X-Total-Count"] == "0"
    assert set(table_counts(other).values()) == {0}


def test_import_that_is_not_json_is_422(client: TestClient) -> None:
    response = client.post(
        f"{DB}/import", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


# --- deletes ---------------------------------------------------------------------------------


def orphans(settings: Settings) -> dict[str, int]:
    """Count child rows whose task no longer exists (the app must be closed)."""
    engine = create_engine(settings.database_url("generator"))
    try:
        with engine.connect() as conn:
            tasks = set(conn.scalars(select(Task.task_id)))
            return {
                model.__tablename__: sum(
                    1 for owner in conn.scalars(select(model.task_id)) if owner not in tasks
                )
                for model in (TaskStep, TaskMetric, TaskTag)
            }
    finally:
        engine.dispose()


def test_delete_task_removes_every_child_row(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        seed(client)
        response = client.delete(f"{DB}/task/task-1")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "success" and "task-1" in body["message"]
        assert body["timestamp"]
        assert body["deleted"] == {
            "generator_task_steps": 2,
            "generator_task_metrics": 2,
            "generator_task_tags": 2,
            "generator_tasks": 1,
        }
        assert client.get(f"{DB}/task/task-1").status_code == 404
        assert client.get(f"{DB}/task/task-2").status_code == 200
        assert client.delete(f"{DB}/task/task-1").status_code == 404
    assert orphans(settings) == dict.fromkeys(
        ("generator_task_steps", "generator_task_metrics", "generator_task_tags"), 0
    )
    counts = table_counts(settings)
    assert counts["generator_tasks"] == 2
    assert counts["generator_task_tags"] == 1  # task-2's only tag


def test_delete_batch_with_its_tasks_leaves_no_orphans(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        seed(client)
        response = client.delete(f"{DB}/batch/batch-1", params={"delete_tasks": "true"})
        assert response.status_code == 200
        assert client.get(f"{DB}/task/task-1").status_code == 404
    assert set(orphans(settings).values()) == {0}
    assert table_counts(settings)["generator_batch_tasks"] == 2


def test_delete_batch_without_tasks_unlinks_them(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        seed(client)
        response = client.delete(f"{DB}/batch/batch-1")
        assert response.status_code == 200
        got = client.get(f"{DB}/task/task-1").json()
        assert got["batch_id"] is None and len(got["steps"]) == 2
    engine = create_engine(settings.database_url("generator"))
    try:
        with engine.connect() as conn:
            linked = list(conn.scalars(select(Task.task_id).where(Task.batch_id == "batch-1")))
    finally:
        engine.dispose()
    assert linked == []
