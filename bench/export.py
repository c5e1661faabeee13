"""4. Export through POST /export next to DuckDB COPY of the same rows; RSS while streaming."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx

from app.components.test_suite.service import TABLES
from bench.server import RssSampler
from bench.stats import ratio

PREFIX = "/api/test/db"
CASES = "test_run_cases"
COPY_OPTIONS = {
    "json": "FORMAT json, ARRAY true",
    "jsonl": "FORMAT json",
    "parquet": "FORMAT parquet, COMPRESSION zstd",
}


@dataclass(frozen=True)
class ExportCase:
    """One export the bench times: its name, the request body, and its format."""

    name: str
    body: dict[str, Any]
    fmt: str


CASES_EXPORTS = (
    ExportCase(
        "parquet (test_run_cases)",
        {"filename": "bench-cases.parquet", "format": "parquet", "table": CASES},
        "parquet",
    ),
    ExportCase(
        "jsonl (test_run_cases)",
        {"filename": "bench-cases.jsonl", "format": "jsonl", "table": CASES},
        "jsonl",
    ),
    # The JSON document (what `import` reads back) with the run tables: runs, results, cases,
    # tags, artifacts; metrics, steps and batches left out to stay near the 1M rows.
    ExportCase(
        "json document (runs + cases)",
        {
            "filename": "bench-document.json",
            "format": "json",
            "include_metrics": False,
            "include_steps": False,
            "include_batches": False,
        },
        "json",
    ),
)


def _raw_copy(con: duckdb.DuckDBPyConnection, tables: list[str], fmt: str, folder: Path) -> int:
    """COPY the same columns, in the same order, of each table to a file; return the rows."""
    specs = {spec.name: spec for spec in TABLES}
    rows = 0
    for name in tables:
        spec = specs[name]
        cols = ", ".join(f'"{c.name}"' for c in spec.columns)
        order = ", ".join(f'"{c}"' for c in spec.order_by)
        target = folder / f"{name}.{fmt}"
        sql = (
            f'COPY (SELECT {cols} FROM "{name}" ORDER BY {order}) '
            f"TO '{target}' ({COPY_OPTIONS[fmt]})"
        )
        result = con.execute(sql).fetchone()
        rows += int(result[0]) if result else 0
    for item in folder.iterdir():
        item.unlink()
    return rows


def measure(
    url: str,
    con: duckdb.DuckDBPyConnection,
    export_dir: Path,
    work: Path,
    reps: int,
    sampler: RssSampler,
) -> dict[str, Any]:
    """Time each export over HTTP and the raw COPY of the same rows, interleaved."""
    scratch = work / "raw_exports"
    scratch.mkdir(exist_ok=True)
    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=1800) as client:
        for case in CASES_EXPORTS:
            http_s: list[float] = []
            raw_s: list[float] = []
            written: dict[str, Any] = {}
            sampler.reset()
            for _ in range(reps):
                t0 = time.perf_counter()
                response = client.post(f"{PREFIX}/export", json={**case.body, "overwrite": True})
                t1 = time.perf_counter()
                response.raise_for_status()
                written = response.json()
                (export_dir / case.body["filename"]).unlink(missing_ok=True)
                tables = list(written["rows"])
                t2 = time.perf_counter()
                raw_rows = _raw_copy(con, tables, case.fmt, scratch)
                raw_s.append(time.perf_counter() - t2)
                http_s.append(t1 - t0)
            http_best, raw_best = min(http_s), min(raw_s)
            out[case.name] = {
                "request": case.body,
                "rows": sum(written["rows"].values()),
                "raw_rows": raw_rows,
                "bytes": written["bytes"],
                "http_s": round(http_best, 3),
                "raw_copy_s": round(raw_best, 3),
                "http_runs_s": [round(x, 3) for x in http_s],
                "raw_runs_s": [round(x, 3) for x in raw_s],
                "ratio": ratio(http_best, raw_best),
                "peak_rss_mb": round(sampler.peak(), 1),
            }
        out["streamed GET /export?format=json"] = _streamed(client, sampler)
    return out


def _streamed(client: httpx.Client, sampler: RssSampler) -> dict[str, Any]:
    """Download the full JSON document from GET /export, sampling the server's RSS meanwhile."""
    sampler.reset()
    before = sampler.current()
    size = 0
    t0 = time.perf_counter()
    with client.stream("GET", f"{PREFIX}/export", params={"format": "json"}) as response:
        response.raise_for_status()
        first = None
        for block in response.iter_bytes(1 << 20):
            if first is None:
                first = time.perf_counter() - t0
            size += len(block)
    return {
        "bytes": size,
        "seconds": round(time.perf_counter() - t0, 3),
        "first_byte_s": round(first or 0.0, 3),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(sampler.peak(), 1),
    }
