"""`python -m app copy`: a DuckDB history moved into another database (DuckDB, or PostgreSQL
under --backend postgres) without loss, resumable after an interruption, refusing to mix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from app.__main__ import main
from app.components import COMPONENTS
from app.core.config import Settings
from app.core.copy import CopyError, TableCopy, copy_database
from app.main import create_app
from tests.support import fresh_url

TS = "/api/test/db"
GEN = "/api/generator/db"
RUNS = 12
LOCAL = "http://127.0.0.1"  # a host the app serves (APP_ALLOWED_HOSTS)


def settings_on(test_url: str, generator_url: str, folder: Path) -> Settings:
    """Return settings whose two databases are the given URLs (whatever the test backend)."""
    return Settings(
        test_database_url=test_url,
        generator_database_url=generator_url,
        export_dir=folder / "exports",
        output_dir=folder / "generated",
        results_dir=folder / "results",
        backup_before_migrate=False,
    )


def run_doc(i: int) -> dict[str, Any]:
    """Return a finished run with cases, metrics, steps, tags and an artifact."""
    return {
        "run_id": f"run-{i:03d}",
        "model_name": f"model-{i % 3}",
        "hardware": ["cpu", "cuda"] if i % 2 else ["cpu"],
        "status": "completed" if i % 4 else "error",
        "started_at": f"2026-11-{1 + i % 28:02d}T10:00:00Z",
        "completed_at": f"2026-11-{1 + i % 28:02d}T10:05:00Z",
        "tags": {"commit": f"c{i % 5}", "team": "ünïcode"},
        "steps": [{"step_name": "load", "status": "completed"}],
        "artifacts": [{"artifact_type": "log", "artifact_path": f"logs/{i}.log"}],
        "results": {
            "test_details": [
                {"name": f"tests/test_m.py::t{j}", "status": "failed" if j == i % 7 else "passed"}
                for j in range(7)
            ],
            "performance_metrics": {"cpu": {"latency_ms": 10.0 + i, "memory_mb": 100.5}},
        },
    }


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Record a history of both components into two DuckDB files through the real app."""
    folder = tmp_path / "source"
    test_url = f"duckdb:///{folder / 'test_runs.duckdb'}"
    generator_url = f"duckdb:///{folder / 'generator_tasks.duckdb'}"
    with TestClient(
        create_app(settings_on(test_url, generator_url, folder)), base_url=LOCAL
    ) as client:
        for i in range(RUNS):
            assert client.post(f"{TS}/runs", json=run_doc(i)).status_code == 201
        batch = client.post(f"{TS}/batches", json={"batch_id": "nightly", "description": "n"})
        assert batch.status_code == 201, batch.text
        for i in range(3):
            assert client.put(f"{TS}/batch/nightly/runs/run-{i:03d}").status_code == 200
        for i in range(4):
            task = {"task_id": f"task-{i}", "model_name": f"model-{i}", "tags": {"k": str(i)}}
            assert client.post(f"{GEN}/tasks", json=task).status_code == 201
    yield test_url, generator_url


def rows_of(url: str) -> dict[str, list[dict[str, Any]]]:
    """Return every table of every component the database holds, rows in key order."""
    engine = create_engine(url)
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        with engine.connect() as conn:
            for comp in COMPONENTS:
                for table in comp.metadata.sorted_tables:
                    if not engine.dialect.has_table(conn, table.name):
                        continue
                    key = list(table.primary_key.columns)
                    rows = conn.execute(select(table).order_by(*key))
                    out[table.name] = [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()
    return out


def test_copy_moves_both_components_without_loss_and_the_target_serves_them(
    source: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test_src, gen_src = source
    test_dst, gen_dst = fresh_url(tmp_path, "copy_test"), fresh_url(tmp_path, "copy_gen")
    for src, dst in ((test_src, test_dst), (gen_src, gen_dst)):
        assert main(["copy", "--from", src, "--to", dst, "--batch", "5"]) == 0
    out = capsys.readouterr()
    assert "test_suite.test_run_cases" in out.err and "100.0%" in out.err
    assert "copied" in out.out
    for src, dst in ((test_src, test_dst), (gen_src, gen_dst)):
        before, after = rows_of(src), rows_of(dst)
        assert before == after
    # Every Test Suite table had rows to copy, but the leases: a stopped server leaves none.
    assert all(rows for name, rows in rows_of(test_src).items() if name != "test_run_leases")
    assert rows_of(gen_src)["generator_tasks"]
    # The target serves the same answers, and new rows get ids past the copied ones.
    folder = tmp_path / "served"
    with TestClient(
        create_app(settings_on(test_src, gen_src, tmp_path / "s")), base_url=LOCAL
    ) as old:
        want = old.get(f"{TS}/run/run-005").json()
        want_task = old.get(f"{GEN}/task/task-2").json()
    with TestClient(create_app(settings_on(test_dst, gen_dst, folder)), base_url=LOCAL) as new:
        assert new.get(f"{TS}/run/run-005").json() == want
        assert new.get(f"{GEN}/task/task-2").json() == want_task
        assert new.post(f"{TS}/runs", json=run_doc(RUNS)).status_code == 201
        assert new.get(f"{TS}/runs").headers["x-total-count"] == str(RUNS + 1)
        added = new.post(
            f"{TS}/run/run-000/artifacts", json=[{"artifact_type": "log", "artifact_path": "x"}]
        )
        assert added.status_code == 201 and len(added.json()) == 2
    ids = [r["id"] for r in rows_of(test_dst)["test_run_cases"]]
    assert len(ids) == len(set(ids)) == (RUNS + 1) * 7


def test_an_interrupted_copy_continues_where_it_stopped(
    source: tuple[str, str], tmp_path: Path
) -> None:
    test_src, _ = source
    target = fresh_url(tmp_path, "resumed")
    seen: list[TableCopy] = []

    def crash_after_two_batches(f: TableCopy) -> None:
        seen.append(f)
        if f.table == "test_run_cases" and f.copied == 10:
            raise KeyboardInterrupt  # after the second batch's commit

    with pytest.raises(KeyboardInterrupt):
        copy_database(test_src, target, COMPONENTS, batch_rows=5, progress=crash_after_two_batches)
    partial = rows_of(target)["test_run_cases"]
    assert len(partial) == 10
    done = copy_database(test_src, target, COMPONENTS, batch_rows=5)
    cases = next(t for t in done if t.table == "test_run_cases")
    assert (cases.resumed_at, cases.copied, cases.source_rows) == (10, RUNS * 7 - 10, RUNS * 7)
    assert rows_of(target) == rows_of(test_src)
    # Run again on a complete copy: nothing to do, nothing doubled.
    again = copy_database(test_src, target, COMPONENTS, batch_rows=5)
    assert sum(t.copied for t in again) == 0
    assert rows_of(target) == rows_of(test_src)


def test_copy_refuses_to_mix_histories_and_says_why(
    source: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test_src, gen_src = source
    target = fresh_url(tmp_path, "foreign")
    with TestClient(
        create_app(settings_on(target, gen_src, tmp_path / "f")), base_url=LOCAL
    ) as client:
        assert client.post(f"{TS}/runs", json=run_doc(99)).status_code == 201
    with pytest.raises(CopyError, match="not the first rows of the source"):
        copy_database(test_src, target, COMPONENTS)
    assert main(["copy", "--from", test_src, "--to", test_src]) == 2
    assert "the same database" in capsys.readouterr().err
    missing = f"duckdb:///{tmp_path / 'nope.duckdb'}"
    assert main(["copy", "--from", missing, "--to", target]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["copy", "--from", test_src, "--to", target, "--batch", "0"]) == 2
    assert main(["copy", "--from", test_src, "--to", target, "--component", "nope"]) == 2
    assert "unknown component" in capsys.readouterr().err
    # The refused target kept its own row and got nothing else.
    assert [r["run_id"] for r in rows_of(target)["test_runs"]] == ["run-099"]
