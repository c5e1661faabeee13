"""The bench at tiny scale runs end to end and writes a complete results file (no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    "targets",
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
