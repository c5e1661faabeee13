"""The bench at tiny scale runs end to end and writes a complete results file (no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import dataset, ingest
from bench.scales import SCALES

ROOT = Path(__file__).resolve().parents[2]

TOP_LEVEL = {
    "date",
    "scale",
    "machine",
    "versions",
    "dataset",
    "bulk",
    "queries",
    "export",
    "ingest",
    "writes",
    "writes_minimal",
    "writes_raw",
    "writes_ceiling",
    "targets",
    "write_path",
    "wall_s",
}
ENDPOINTS = {
    "models/stats",
    "hardware/stats",
    "performance?days=30",
    "runs?limit=50&offset=250",
    "run/{id}",
    "search",
    "tests",
    "tests/history",
    "flaky",
    "regressions",
    "compare",
    "trends",
}
# Issue 14's table: one row per write workload next to raw DuckDB's naive writes.
WRITE_PATH_ROWS = (
    "step/progress updates",
    "the same, PATCH answered with the whole run",
    "HTTP ceiling: GET /api/test/types",
    "runs of 50 details + 20 metrics + 5 tags, 16 clients, Prefer: return=minimal",
    "runs of 50 details + 20 metrics + 5 tags, 16 clients, whole run answered",
    "runs of 50 details + 20 metrics + 5 tags, 1 client, one after another, Prefer: return=min",
    "runs of 50 details + 20 metrics + 5 tags, 1 client, one after another, whole run answered",
    "runs of 1,000 details, 1 client",
    "GET /run/{id} of a run of 50 tests",
    "Server peak RSS during all of the above",
)
PAGES = {
    "overview",
    "model",
    "run",
    "batch",
    "compare",
    "compare (batches)",
    "flaky",
    "regressions",
    "tests",
    "test history",
    "generator",
    "task",
    "sql",
}


@pytest.mark.e2e
def test_bench_tiny_writes_results_json(tmp_path: Path) -> None:
    """`python -m bench --scale tiny` measures every section and writes valid JSON."""
    out = tmp_path / "results"
    md = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "-m", "bench", "--scale", "tiny", "--out", str(out)]
    command += ["--benchmarks-md", str(md), "--work", str(tmp_path / "work")]
    proc = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    files = list(out.glob("*.json"))
    assert len(files) == 1
    results = json.loads(files[0].read_text())

    assert set(results) >= TOP_LEVEL
    assert results["scale"]["name"] == "tiny"
    assert {"cores", "memory_gb", "cpu"} <= set(results["machine"])
    assert {"python", "duckdb", "SQLAlchemy", "duckdb_engine", "fastapi"} <= set(
        results["versions"]
    )
    assert results["dataset"]["rows"]["test_run_cases"] == results["scale"]["cases"]

    for kind in ("large", "small"):
        bulk = results["bulk"][kind]
        assert bulk["rows"] > 0
        assert bulk["store_rows_per_s"] > 0 and bulk["raw_rows_per_s"] > 0
    large = results["ingest"]["http_large"]
    assert large["errors"] == 0 and large["stored_ok"] is True
    assert large["rows"] == results["scale"]["large_runs"] * results["scale"]["large_details"]
    assert results["ingest"]["http_small"]["errors"] == 0
    assert large["peak_rss_mb"] > 0

    assert set(results["queries"]) == ENDPOINTS
    for figures in results["queries"].values():
        assert figures["statements"] >= 1
        assert figures["http"]["n"] == figures["raw"]["n"] == results["scale"]["query_reps"]

    exports = results["export"]
    assert "streamed GET /export?format=json" in exports
    for name, figures in exports.items():
        assert figures["peak_rss_mb"] > 0
        if "raw_copy_s" in figures:
            assert figures["rows"] == figures["raw_rows"] > 0, name

    writes = results["writes"]
    assert writes["requests"] > 0 and "errors" in writes
    _assert_write_path(results, proc.stdout)

    # Every dashboard page answered 200 with a body (the bench raises on any other status).
    assert set(results["pages"]) == PAGES
    for figures in results["pages"].values():
        assert figures["http"]["n"] == results["scale"]["query_reps"]
        assert figures["response_bytes"] > 0
        assert figures["limit_ms"] == 1000.0
    page_rows = [r for r in results["targets"] if r["target"].startswith("page ")]
    assert len(page_rows) == len(PAGES)
    report_rows = [r for r in results["targets"] if r["target"].startswith("report ")]
    assert {r["target"].split()[1] for r in report_rows} == {
        "tests",
        "tests/history",
        "flaky",
        "regressions",
        "compare",
        "trends",
    }

    assert results["targets"]
    for row in results["targets"]:
        assert row["result"] in {"met", "missed", "info"}
        assert {"target", "measured", "raw", "ratio", "limit"} <= set(row)

    # The BENCHMARKS.md section was written between its markers; the printed table matches.
    text = md.read_text()
    assert "<!-- bench:tiny:begin -->" in text and "<!-- bench:tiny:end -->" in text
    assert "| Target | Measured | Raw DuckDB | Ratio | Limit | Result |" in proc.stdout


def _assert_write_path(results: dict[str, Any], stdout: str, *, writes: bool = True) -> None:
    """The write path's workloads, raw DuckDB's naive counterparts and the table are there."""
    ingest, scale = results["ingest"], results["scale"]
    assert ingest["http_small_single"]["runs"] == scale["single_runs"]
    assert ingest["http_small_single"]["errors"] == 0
    assert ingest["raw_small"]["threads"] == scale["small_clients"]
    assert ingest["raw_small_single"]["threads"] == 1
    for key, runs in (("raw_small", "small_runs"), ("raw_small_single", "single_runs")):
        assert ingest[key]["runs"] == scale[runs] and ingest[key]["errors"] == 0
        assert ingest[key]["runs_per_s"] > 0
    get = ingest["get_run_small"]
    assert get["statements"] >= 1 and get["raw_rows"] >= scale["small_details"]
    assert get["http"]["n"] == get["raw"]["n"] == scale["query_reps"]
    expected = WRITE_PATH_ROWS if writes else WRITE_PATH_ROWS[3:]
    targets = [r["target"] for r in results["write_path"]]
    assert len(targets) == len(expected)
    for target, start in zip(targets, expected, strict=True):
        assert target.startswith(start), (target, start)
    for row in results["write_path"]:
        assert row["result"] in {"met", "missed", "info"}
    assert "| Workload | App | Raw DuckDB, naive | Ratio | Target | Result |" in stdout
    if writes:
        assert results["writes_raw"]["requests"] > 0 and results["writes_raw"]["errors"] == 0
        ceiling = results["writes_ceiling"]
        assert ceiling["requests"] > 0 and ceiling["errors"] == 0
        assert ceiling["statuses"] == {"200": ceiling["requests"]}


def test_small_documents_hold_details_metrics_and_tags() -> None:
    """The small runs' bodies carry 50 details, 20 metric points and 5 tags (issue 14)."""
    scale = SCALES["tiny"]
    docs = ingest.documents(
        scale,
        dataset.anchor_time(),
        "small",
        2,
        scale.small_details,
        metrics=scale.small_metrics,
        tags=scale.small_tags,
    )
    body = json.loads(docs[0].body)
    assert len(body["results"]["test_details"]) == 50
    assert len(body["metrics"]) == len(docs[0].metrics) == 20
    assert body["tags"] == docs[0].tags and len(body["tags"]) == 5
    assert {m["name"] for m in body["metrics"]} == {m["metric_name"] for m in docs[0].metrics}


@pytest.mark.e2e
def test_bench_only_ingest_has_the_write_path_rows_without_bulk(tmp_path: Path) -> None:
    """`--only ingest` measures raw DuckDB's large-run figure itself and fills the run rows."""
    out = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "--scale", "tiny", "--out", str(out), "--no-md"]
    command += ["--data-cache", str(tmp_path / "cache"), "--only", "ingest", "--reps", "2"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(next(out.glob("*.json")).read_text())
    assert "bulk" not in results and "writes" not in results
    assert results["ingest"]["raw_large"]["raw_rows_per_s"] > 0
    _assert_write_path(results, proc.stdout, writes=False)


@pytest.mark.e2e
def test_bench_data_cache_builds_once_and_only_runs_the_sections_asked(tmp_path: Path) -> None:
    """`--data-cache DIR --only pages` builds the data set once, then reuses the same file."""
    cache = tmp_path / "cache"
    stamps = []
    for k in range(2):
        out = tmp_path / f"results{k}"
        command = [sys.executable, "-m", "bench", "--scale", "tiny", "--out", str(out)]
        command += ["--no-md", "--data-cache", str(cache), "--only", "pages", "--reps", "1"]
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        results = json.loads(next(out.glob("*.json")).read_text())
        assert "pages" in results and "queries" not in results and "ingest" not in results
        assert results["scale"]["query_reps"] == 1
        stamps.append((cache / "tiny.duckdb").stat().st_mtime_ns)
    assert stamps[0] == stamps[1]
    assert "from the cache" in proc.stderr


def test_bench_refuses_an_unknown_section() -> None:
    """`--only` names known sections; anything else is a usage error (exit 2)."""
    command = [sys.executable, "-m", "bench", "--only", "queries,bogus"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown sections ['bogus']" in proc.stderr
