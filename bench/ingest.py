"""1-2. Ingest: per-test rows through HTTP, through the store's bulk path, and by raw DuckDB."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa

from app.components.test_suite import store
from app.components.test_suite.schemas import CASE_FIELDS
from app.core.db import DatabaseRegistry
from bench.dataset import METRICS, case_details, model_names
from bench.scales import DEVICES, SEED, Scale
from bench.server import RssSampler
from bench.stats import ratio, summary_ms

JSON = {"content-type": "application/json"}
RUNS = "/api/test/db/runs"
CASE_COLUMNS = ("run_id", "position", "name", "status", "duration_ms", "error", "hardware")


@dataclass(frozen=True)
class Document:
    """One run to record: its id, its per-test rows, and the request body.

    `run`, `metrics` and `tags` hold what the body says as table rows (metric points with their
    timestamps), for the raw DuckDB inserts that write the same run (bench/write_path.py).
    """

    run_id: str
    details: list[dict[str, Any]]
    body: bytes
    run: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


def _metric_points(
    rng: random.Random, count: int, devices: list[str], at: datetime
) -> list[dict[str, Any]]:
    """Return `count` metric points as test_run_metrics rows (names cycle through METRICS)."""
    return [
        {
            "metric_name": METRICS[m % len(METRICS)][0],
            "metric_value": round(rng.uniform(1.0, 1_000.0), 3),
            "metric_unit": METRICS[m % len(METRICS)][1],
            "hardware": devices[(m // len(METRICS)) % len(devices)],
            "timestamp": at + timedelta(seconds=m),
        }
        for m in range(count)
    ]


def _tags(count: int, k: int) -> dict[str, str]:
    """Return `count` tags: source=bench first (the only one before issue 14), then more."""
    extra = {"branch": f"br-{k % 7}", "commit": f"{k * 2654435761:x}", "runner": "bench-01"}
    extra |= {"python": "3.11", **{f"tag_{i}": str(i) for i in range(max(0, count - 5))}}
    return dict(list({"source": "bench", **extra}.items())[:count])


def documents(
    scale: Scale,
    anchor: datetime,
    kind: str,
    count: int,
    size: int,
    *,
    metrics: int = 0,
    tags: int = 1,
) -> list[Document]:
    """Return `count` recording documents of `size` per-test rows, `metrics` points and `tags`."""
    rng = random.Random(f"{SEED}-{kind}")
    models = model_names(scale)
    docs = []
    for k in range(count):
        run_id = f"ingest-{kind}-{k:05d}"
        devices = rng.sample(DEVICES[: scale.devices], 2)
        details = case_details(rng, size, devices)
        started = anchor - timedelta(minutes=5 + k)
        completed = started + timedelta(seconds=120)
        run: dict[str, Any] = {
            "run_id": run_id,
            "model_name": models[rng.randrange(len(models))],
            "hardware": devices,
            "test_type": "comprehensive",
            "status": "completed",
            "started_at": started,
            "completed_at": completed,
        }
        points = _metric_points(rng, metrics, devices, started)
        labels = _tags(tags, k)
        doc: dict[str, Any] = {
            **run,
            "started_at": started.isoformat(),
            "completed_at": completed.isoformat(),
            "results": {"test_details": details},
            "tags": labels,
        }
        if points:
            doc["metrics"] = [
                {
                    "name": p["metric_name"],
                    "value": p["metric_value"],
                    "unit": p["metric_unit"],
                    "hardware": p["hardware"],
                    "timestamp": p["timestamp"].isoformat(),
                }
                for p in points
            ]
        body = json.dumps(doc).encode()
        docs.append(Document(run_id, details, body, run, points, labels))
    return docs


# --- the store's bulk path and raw DuckDB, in this process, on copies of the data set ---------


def _raw_insert(con: duckdb.DuckDBPyConnection, doc: Document) -> None:
    n = len(doc.details)
    table = pa.Table.from_pylist(doc.details)
    table = table.append_column("run_id", pa.array([doc.run_id] * n, pa.string()))
    table = table.append_column("position", pa.array(range(n), pa.int64()))
    cols = ", ".join(CASE_COLUMNS)
    con.begin()
    con.register("bench_rows", table)
    con.execute(f"INSERT INTO test_run_cases ({cols}) SELECT {cols} FROM bench_rows")
    con.unregister("bench_rows")
    con.commit()


def _columns(details: list[dict[str, Any]]) -> dict[str, list[Any]]:
    # What the store takes: the validated rows column by column (CaseColumns.columns()).
    return {name: [row.get(name) for row in details] for name in CASE_FIELDS}


def store_vs_raw(work: Path, data_db: Path, docs: list[Document]) -> dict[str, Any]:
    """Insert the same per-test rows by `store.replace_cases` and by raw Arrow INSERT … SELECT."""
    store_db = work / "ingest_store.duckdb"
    raw_db = work / "ingest_raw.duckdb"
    shutil.copy(data_db, store_db)
    shutil.copy(data_db, raw_db)
    registry = DatabaseRegistry()
    con = duckdb.connect(str(raw_db))
    con.execute("SET TimeZone='UTC'")
    store_s = raw_s = 0.0
    rows = 0
    try:
        db = registry.get(f"duckdb:///{store_db}")
        # Warm both paths (first Arrow registration, first connection) outside the timing.
        with db.writing() as session:
            store.replace_cases(session, "warm-up", _columns(docs[0].details[:10]))
        _raw_insert(con, Document("warm-up", docs[0].details[:10], b""))
        for doc in docs:  # interleaved, so both see the same machine noise
            t0 = time.perf_counter()
            with db.writing() as session:
                store.replace_cases(session, doc.run_id, _columns(doc.details))
            t1 = time.perf_counter()
            _raw_insert(con, doc)
            t2 = time.perf_counter()
            store_s += t1 - t0
            raw_s += t2 - t1
            rows += len(doc.details)
    finally:
        con.close()
        registry.dispose()
        store_db.unlink(missing_ok=True)
        raw_db.unlink(missing_ok=True)
    store_rate = rows / store_s
    raw_rate = rows / raw_s
    return {
        "rows": rows,
        "runs": len(docs),
        "store_s": round(store_s, 3),
        "raw_s": round(raw_s, 3),
        "store_rows_per_s": round(store_rate),
        "raw_rows_per_s": round(raw_rate),
        "store_vs_raw": ratio(store_rate, raw_rate),
    }


# --- HTTP ------------------------------------------------------------------------------------


def rates(runs: int, rows: int, wall: float) -> dict[str, Any]:
    """Return the runs and rows written in `wall` seconds, and their rates."""
    return {
        "runs": runs,
        "rows": rows,
        "wall_s": round(wall, 3),
        "runs_per_s": round(runs / wall, 1),
        "rows_per_s": round(rows / wall),
    }


def http_sequential(
    url: str, docs: list[Document], sampler: RssSampler, *, minimal: bool = False
) -> dict[str, Any]:
    """POST the documents one after another from one client; return rows/s and peak RSS.

    With `minimal`, each request sends `Prefer: return=minimal` (the answer is the run's
    summary); without it the answer echoes the whole run, 10,000 per-test rows included.
    """
    headers = {**JSON, "Prefer": "return=minimal"} if minimal else JSON
    latencies: list[float] = []
    errors = 0
    with httpx.Client(base_url=url, timeout=600) as client:
        sampler.reset()
        began = time.perf_counter()
        for doc in docs:
            t0 = time.perf_counter()
            response = client.post(RUNS, content=doc.body, headers=headers)
            latencies.append(time.perf_counter() - t0)
            if response.status_code != 201:
                errors += 1
        wall = time.perf_counter() - began
        peak = sampler.peak()
        stored = client.get(f"/api/test/db/run/{docs[-1].run_id}").json()
    details = (stored.get("results") or {}).get("test_details") or []
    return {
        **rates(len(docs), sum(len(d.details) for d in docs), wall),
        "clients": 1,
        "prefer_minimal": minimal,
        "request": summary_ms(latencies),
        "errors": errors,
        "stored_ok": len(details) == len(docs[-1].details),
        "peak_rss_mb": round(peak, 1),
    }


async def _concurrent(
    url: str, docs: list[Document], clients: int, minimal: bool
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    pending = iter(docs)
    headers = {**JSON, "Prefer": "return=minimal"} if minimal else JSON
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            for doc in pending:
                t0 = time.perf_counter()
                try:
                    response = await client.post(RUNS, content=doc.body, headers=headers)
                    ok = response.status_code == 201
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - began
    return wall, latencies, errors


def http_concurrent(
    url: str, docs: list[Document], clients: int, sampler: RssSampler, *, minimal: bool = False
) -> dict[str, Any]:
    """POST the documents from `clients` concurrent clients; return rows/s and peak RSS.

    With `minimal`, each request sends `Prefer: return=minimal` (see `http_sequential`)."""
    sampler.reset()
    wall, latencies, errors = asyncio.run(_concurrent(url, docs, clients, minimal))
    return {
        **rates(len(docs), sum(len(d.details) for d in docs), wall),
        "clients": clients,
        "prefer_minimal": minimal,
        "request": summary_ms(latencies),
        "errors": errors,
        "peak_rss_mb": round(sampler.peak(), 1),
    }
