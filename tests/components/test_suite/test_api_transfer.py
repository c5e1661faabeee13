"""Export, import and delete: files only in the export folder, exact round trips, no orphans."""

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
from sqlalchemy import select

from app.components.test_suite.models import Base, Run
from app.core.config import Settings
from app.main import create_app
from tests.components.test_suite.support import (
    TABLES,
    B,
    app_table_counts,
    database,
    run_doc,
)
from tests.components.test_suite.test_api_recording import full_document
from tests.support import make_settings


def populate(client: TestClient) -> None:
    """Record runs with every kind of child row, two batches, and live-appended rows."""
    docs = [
        full_document("full-1"),
        run_doc(
            "r-a",
            model="gpt2",
            hardware=["cuda"],
            batch_id="b1",
            tags={"x": "1"},
            metrics={"cuda": {"latency_ms": 3.0}},
        ),
        run_doc("r-b", model="gpt2", status="error", batch_id="b1"),
        run_doc("r-c", model="t5", status="running", seconds=None),
    ]
    for doc in docs:
        assert client.post(f"{B}/runs", json=doc).status_code == 201
    client.post(
        f"{B}/batches", json={"batch_id": "b2", "description": "two", "run_ids": ["r-a", "full-1"]}
    )
    client.post(f"{B}/run/r-c/cases", json=[{"name": "t1", "status": "passed"}])
    client.put(f"{B}/run/r-c/steps/a%2Fb", json={"status": "running"})
    client.post(f"{B}/run/r-c/metrics", json=[{"name": "rss_mb", "value": 1.5}])
    client.post(f"{B}/run/r-c/artifacts", json=[{"artifact_type": "log", "artifact_path": "/l"}])


def export_doc(client: TestClient, settings: Settings, name: str = "e.json") -> dict[str, Any]:
    response = client.post(f"{B}/export", json={"filename": name, "overwrite": True})
    assert response.status_code == 200, response.text
    return json.loads((Path(settings.export_dir) / name).read_text())


# --- export ----------------------------------------------------------------------------------


def test_seed_export_example_writes_a_full_json_document(
    client: TestClient, settings: Settings
) -> None:
    populate(client)
    response = client.post(f"{B}/export", json={"filename": "test_export.json"})
    assert response.status_code == 200, response.text
    body = response.json()
    path = Path(settings.export_dir).resolve() / "test_export.json"
    assert body["status"] == "success" and body["format"] == "json"
    assert Path(body["path"]) == path and body["filename"] == "test_export.json"
    assert body["bytes"] == path.stat().st_size
    assert body["rows"] == app_table_counts(client)
    doc = json.loads(path.read_text())
    assert doc["format"] == "accelerate-tracking-export" and doc["component"] == "test_suite"
    assert doc["schema_revision"] == body["schema_revision"] is not None
    assert sorted(doc["tables"]) == TABLES
    assert {name: len(rows) for name, rows in doc["tables"].items()} == body["rows"]
    run = next(r for r in doc["tables"]["test_runs"] if r["run_id"] == "full-1")
    assert run["hardware"] == ["cpu", "cuda"] and run["started_at"].startswith("2026-03-02T09:30")
    results = next(r for r in doc["tables"]["test_run_results"] if r["run_id"] == "full-1")
    assert results["result_data"]["environment"]["flags"] == [1, 2.5, True, "x"]


def test_export_include_flags_choose_the_tables(client: TestClient, settings: Settings) -> None:
    populate(client)
    client.post(
        f"{B}/export",
        json={
            "filename": "a.json",
            "include_metrics": False,
            "include_batches": False,
            "include_steps": False,
        },
    )
    doc = json.loads((Path(settings.export_dir) / "a.json").read_text())
    assert "test_run_metrics" not in doc["tables"] and "batch_test_runs" not in doc["tables"]
    assert "test_run_steps" not in doc["tables"] and "test_runs" in doc["tables"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_one_table_in_each_format(client: TestClient, settings: Settings, fmt: str) -> None:
    populate(client)
    expected = app_table_counts(client)
    for table in ("test_runs", "test_run_metrics", "test_run_tags"):
        name = f"{table}.{fmt}"
        response = client.post(f"{B}/export", json={"filename": name, "table": table})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["format"] == fmt and body["rows"] == {table: expected[table]}
        path = Path(settings.export_dir) / name
        assert body["bytes"] == path.stat().st_size
        if fmt == "parquet":
            rows = pq.read_table(path).to_pylist()
        elif fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(path.read_text())))
        else:
            rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(rows) == expected[table]
        assert all("run_id" in row and "id" not in row for row in rows)
        if fmt == "parquet" and table == "test_runs":  # an aggregated list stays a typed list
            by_run = {row["run_id"]: row for row in rows}
            assert by_run["r-a"]["batch_ids"] == ["b1", "b2"]
            assert by_run["r-c"]["batch_ids"] is None


def test_export_format_follows_the_extension(client: TestClient, settings: Settings) -> None:
    body = client.post(f"{B}/export", json={"filename": "runs.csv"}).json()
    assert body["format"] == "csv" and body["rows"] == {"test_runs": 0}
    assert (Path(settings.export_dir) / "runs.csv").read_text().startswith("run_id,")


@pytest.mark.parametrize(
    "filename",
    [
        "../x.json",
        "a/b.json",
        "/tmp/x.json",
        "..",
        ".",
        ".hidden.json",
        "a\\b.json",
        "x/../../y.json",
        "%2e%2e/x.json",
        "C:x.json",
    ],
)
def test_export_refuses_any_path(
    client: TestClient, settings: Settings, tmp_path: Path, filename: str
) -> None:
    before = set(tmp_path.rglob("*"))
    response = client.post(f"{B}/export", json={"filename": filename})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_filename"
    created = {p for p in set(tmp_path.rglob("*")) - before if "exports" not in p.parts}
    assert created == set()
    assert list(Path(settings.export_dir).iterdir()) == []


def test_export_to_an_existing_file_is_409_unless_overwrite(
    client: TestClient, settings: Settings
) -> None:
    assert client.post(f"{B}/export", json={"filename": "x.json"}).status_code == 200
    path = Path(settings.export_dir) / "x.json"
    before = path.read_text()
    populate(client)
    response = client.post(f"{B}/export", json={"filename": "x.json"})
    assert response.status_code == 409 and response.json()["code"] == "file_exists"
    assert path.read_text() == before
    again = client.post(f"{B}/export", json={"filename": "x.json", "overwrite": True})
    assert again.status_code == 200 and again.json()["rows"]["test_runs"] == 4
    assert path.read_text() != before


def test_export_of_an_unknown_table_is_400(client: TestClient) -> None:
    response = client.post(f"{B}/export", json={"filename": "x.csv", "table": "users"})
    assert response.status_code == 400 and response.json()["code"] == "unknown_table"


def test_export_rejects_unknown_formats_and_fields(client: TestClient) -> None:
    assert client.post(f"{B}/export", json={"filename": "x", "format": "xml"}).status_code == 422
    assert client.post(f"{B}/export", json={"filename": "x", "path": "/"}).status_code == 422
    assert client.post(f"{B}/export", json={}).status_code == 422


@pytest.mark.parametrize(
    ("fmt", "media"),
    [
        ("json", "application/json"),
        ("jsonl", "application/x-ndjson"),
        ("csv", "text/csv"),
        ("parquet", "application/octet-stream"),
    ],
)
def test_download_streams_an_export_and_leaves_nothing_behind(
    client: TestClient, settings: Settings, fmt: str, media: str
) -> None:
    populate(client)
    response = client.get(f"{B}/export", params={"format": fmt})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)
    assert f"test_suite-export.{fmt}" in response.headers["content-disposition"]
    if fmt == "json":
        doc = response.json()
        assert {k: len(v) for k, v in doc["tables"].items()} == app_table_counts(client)
    elif fmt == "parquet":
        assert pq.read_table(io.BytesIO(response.content)).num_rows == 4
    assert list(Path(settings.export_dir).iterdir()) == []


def test_download_of_one_table(client: TestClient) -> None:
    populate(client)
    response = client.get(f"{B}/export", params={"format": "csv", "table": "test_run_tags"})
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == app_table_counts(client)["test_run_tags"]
    assert client.get(f"{B}/export", params={"format": "xml"}).status_code == 422
    assert client.get(f"{B}/export", params={"format": "csv", "table": "x"}).status_code == 400


# --- import ----------------------------------------------------------------------------------


def test_export_import_export_round_trips_every_table(
    client: TestClient, settings: Settings, tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    populate(client)
    first = export_doc(client, settings)
    details = {r: client.get(f"{B}/run/{r}").json() for r in ("full-1", "r-a", "r-b", "r-c")}
    batch = client.get(f"{B}/batch/b2").json()
    other = make_settings(tmp_path / "other", template_dbs)
    with TestClient(create_app(other)) as fresh:
        response = fresh.post(f"{B}/import", json=first)
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == first["counts"]
        second = export_doc(fresh, other)
        assert second["tables"] == first["tables"]
        for run_id, detail in details.items():
            assert fresh.get(f"{B}/run/{run_id}").json() == detail
        assert fresh.get(f"{B}/batch/b2").json() == batch
        counts = app_table_counts(fresh)
        # Importing the same document again changes nothing.
        assert fresh.post(f"{B}/import", json=first).status_code == 200
        assert app_table_counts(fresh) == counts
        assert export_doc(fresh, other)["tables"] == first["tables"]


def test_import_into_the_database_it_came_from_changes_nothing(
    client: TestClient, settings: Settings
) -> None:
    populate(client)
    doc = export_doc(client, settings)
    counts = app_table_counts(client)
    assert client.post(f"{B}/import", json=doc).status_code == 200
    assert app_table_counts(client) == counts
    assert export_doc(client, settings, "again.json")["tables"] == doc["tables"]


def _mutations() -> list[tuple[str, Any]]:
    def unknown_table(doc: dict[str, Any]) -> None:
        doc["tables"]["users"] = [{"id": 1}]

    def bad_type(doc: dict[str, Any]) -> None:
        doc["tables"]["test_runs"][-1]["progress"] = "half"

    def bad_timestamp(doc: dict[str, Any]) -> None:
        doc["tables"]["test_runs"][-1]["started_at"] = "yesterday"

    def wrong_component(doc: dict[str, Any]) -> None:
        doc["component"] = "generator"

    def wrong_format(doc: dict[str, Any]) -> None:
        doc["format"] = "something-else"

    def bad_run_status(doc: dict[str, Any]) -> None:
        doc["tables"]["test_runs"][-1]["status"] = "exploded"

    def bad_batch_status(doc: dict[str, Any]) -> None:
        doc["tables"]["batch_test_runs"][0]["status"] = "done"

    def bad_step_status(doc: dict[str, Any]) -> None:
        doc["tables"]["test_run_steps"][-1]["status"] = "weird"

    def bad_case_status(doc: dict[str, Any]) -> None:
        doc["tables"]["test_run_cases"][-1]["status"] = "meh"

    def unknown_column(doc: dict[str, Any]) -> None:
        doc["tables"]["test_run_tags"][0]["colour"] = "red"

    def null_required(doc: dict[str, Any]) -> None:
        doc["tables"]["test_runs"][-1]["model_name"] = None

    def huge_integer(doc: dict[str, Any]) -> None:
        doc["tables"]["test_run_results"][0]["tests_passed"] = 10**12

    def orphan_step(doc: dict[str, Any]) -> None:
        doc["tables"]["test_run_steps"].append(
            {**doc["tables"]["test_run_steps"][0], "run_id": "ghost"}
        )

    def orphan_link(doc: dict[str, Any]) -> None:
        doc["tables"]["test_run_batch"].append({"run_id": "full-1", "batch_id": "ghost"})

    def duplicate_devices(doc: dict[str, Any]) -> None:
        doc["tables"]["test_runs"][-1]["hardware"] = ["cpu", "cpu"]

    def rows_not_a_list(doc: dict[str, Any]) -> None:
        doc["tables"]["test_runs"] = {"run_id": "x"}

    def result_data_not_object(doc: dict[str, Any]) -> None:
        doc["tables"]["test_run_results"][0]["result_data"] = [1, 2]

    return [
        (f.__name__, f)
        for f in (
            unknown_table,
            bad_type,
            bad_timestamp,
            wrong_component,
            wrong_format,
            bad_run_status,
            bad_batch_status,
            bad_step_status,
            bad_case_status,
            unknown_column,
            null_required,
            huge_integer,
            orphan_step,
            orphan_link,
            duplicate_devices,
            rows_not_a_list,
            result_data_not_object,
        )
    ]


@pytest.mark.parametrize(("name", "mutate"), _mutations())
def test_malformed_import_is_422_and_writes_nothing(
    client: TestClient,
    settings: Settings,
    tmp_path: Path,
    template_dbs: dict[str, Path],
    name: str,
    mutate: Any,
) -> None:
    populate(client)
    doc = copy.deepcopy(export_doc(client, settings))
    mutate(doc)
    other = make_settings(tmp_path / "other", template_dbs)
    with TestClient(create_app(other)) as fresh:
        response = fresh.post(f"{B}/import", json=doc)
        assert response.status_code == 422, (name, response.text)
        assert all(n == 0 for n in app_table_counts(fresh).values()), name
    # Into a database that has the rows already: still nothing changes.
    counts = app_table_counts(client)
    assert client.post(f"{B}/import", json=doc).status_code == 422
    assert app_table_counts(client) == counts


# --- delete ----------------------------------------------------------------------------------


def _orphans(client: TestClient) -> dict[str, int]:
    """Count rows of every table that refer to a run or batch that does not exist."""
    out = {}
    with database(client).reading() as session:
        runs = set(session.scalars(select(Run.run_id)))
        batches = set(session.scalars(select(Base.metadata.tables["batch_test_runs"].c.batch_id)))
        for name, table in Base.metadata.tables.items():
            bad = 0
            for row in session.execute(select(table)).mappings():
                if (name != "test_runs" and "run_id" in row and row["run_id"] not in runs) or (
                    name == "test_run_batch" and row["batch_id"] not in batches
                ):
                    bad += 1
            out[name] = bad
    return out


def test_delete_run_removes_every_child_row(client: TestClient) -> None:
    populate(client)
    before = app_table_counts(client)
    response = client.delete(f"{B}/run/full-1")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success" and "full-1" in body["message"] and body["timestamp"]
    assert body["deleted"]["test_runs"] == 1 and body["deleted"]["test_run_cases"] == 6
    after = app_table_counts(client)
    assert {k: before[k] - after[k] for k in before} == {
        "batch_test_runs": 0,
        "test_run_artifacts": 2,
        "test_run_batch": 2,
        "test_run_cases": 6,
        "test_run_metrics": 6,
        "test_run_results": 1,
        "test_run_steps": 3,
        "test_run_tags": 3,
        "test_runs": 1,
    }
    assert set(_orphans(client).values()) == {0}
    assert client.get(f"{B}/run/full-1").status_code == 404
    # The batches it was in follow: full-1's nightly batch is now empty.
    assert client.get(f"{B}/batch/nightly-2026-03-02").json()["status"] == "initializing"
    assert client.get(f"{B}/batch/b2").json()["run_count"] == 1


def test_delete_every_run_leaves_no_rows(client: TestClient) -> None:
    populate(client)
    for run_id in ("full-1", "r-a", "r-b", "r-c"):
        assert client.delete(f"{B}/run/{run_id}").status_code == 200
    counts = app_table_counts(client)
    assert {k: v for k, v in counts.items() if v} == {"batch_test_runs": 3}


def test_delete_missing_run_is_404(client: TestClient) -> None:
    response = client.delete(f"{B}/run/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "run nope not found", "code": "not_found"}


def test_delete_batch_keeps_its_runs_by_default(client: TestClient) -> None:
    populate(client)
    response = client.delete(f"{B}/batch/b1")
    assert response.status_code == 200 and response.json()["status"] == "success"
    assert client.get(f"{B}/batch/b1").status_code == 404
    assert client.get(f"{B}/run/r-a").json()["batch_ids"] == ["b2"]
    assert client.get(f"{B}/run/r-b").json()["batch_ids"] == []
    assert set(_orphans(client).values()) == {0}


def test_delete_batch_with_runs_removes_them_and_updates_other_batches(
    client: TestClient,
) -> None:
    populate(client)
    response = client.delete(f"{B}/batch/b1", params={"delete_runs": "true"})
    assert response.status_code == 200
    assert response.json()["deleted"]["test_runs"] == 2
    for run_id in ("r-a", "r-b"):
        assert client.get(f"{B}/run/{run_id}").status_code == 404
    assert client.get(f"{B}/run/full-1").status_code == 200
    b2 = client.get(f"{B}/batch/b2").json()
    assert b2["run_count"] == 1 and [r["run_id"] for r in b2["runs"]] == ["full-1"]
    assert set(_orphans(client).values()) == {0}
    assert client.delete(f"{B}/batch/b1").status_code == 404
