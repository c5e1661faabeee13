"""Issue 14, the write path: raw DuckDB doing the HTTP workloads' writes naively, in this process.

Naive means what a hand-written service would do without batching: one `duckdb` connection on
its own copy of the data set, one transaction per request (or per run), one plain statement
per table, committed before the next. Concurrent callers are Python threads, each with its own
`con.cursor()`, serialised by one lock around each whole transaction (BEGIN … COMMIT), as the
app's single writer serialises its writes. A latency starts before the lock is taken, so it
counts the wait for the other threads, as an HTTP latency counts the wait for the writer.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from app.components.test_suite.schemas import FAILED, PASSED, SKIPPED
from bench import queries
from bench.ingest import CASE_COLUMNS, Document, rates
from bench.server import RssSampler
from bench.stats import summary_ms
from bench.writes import PREFIX, STEPS

# What PUT /run/{id}/steps/{name} writes: the app's upsert sets every field of the step body
# (those not sent to NULL) and takes a new id from the table's sequence.
STEP_UPSERT = (
    "INSERT INTO test_run_steps (id, run_id, step_name, status, progress, started_at,"
    " completed_at, duration, error)"
    " VALUES (nextval('test_run_steps_id_seq'), ?, ?, ?, ?, NULL, NULL, NULL, NULL)"
    " ON CONFLICT (run_id, step_name) DO UPDATE SET status = excluded.status,"
    " progress = excluded.progress, started_at = excluded.started_at,"
    " completed_at = excluded.completed_at, duration = excluded.duration, error = excluded.error"
)
# What PATCH /run/{id} with {"progress", "current_step"} writes.
PROGRESS_UPDATE = "UPDATE test_runs SET progress = ?, current_step = ? WHERE run_id = ?"
RUN_INSERT = (
    "INSERT INTO test_runs (run_id, model_name, hardware, test_type, status, progress,"
    " started_at, completed_at, duration) VALUES (?, ?, ?, ?, ?, 1.0, ?, ?, ?)"
)
RESULT_INSERT = (
    "INSERT INTO test_run_results (id, run_id, tests_passed, tests_failed, tests_skipped,"
    " result_data) VALUES (nextval('test_run_results_id_seq'), ?, ?, ?, ?, '{}')"
)
METRIC_COLUMNS = ("run_id", "metric_name", "metric_value", "metric_unit", "hardware", "timestamp")
TAG_COLUMNS = ("run_id", "tag_name", "tag_value")


def connect(db_file: Path) -> duckdb.DuckDBPyConnection:
    """Open a writable DuckDB connection on a copy of the data set (UTC, as the app's)."""
    con = duckdb.connect(str(db_file))
    con.execute("SET TimeZone='UTC'")
    return con


def _threads(
    con: duckdb.DuckDBPyConnection, count: int, work: Callable[[duckdb.DuckDBPyConnection], Any]
) -> tuple[list[Any], float]:
    """Run `work(cursor)` in `count` threads, each on its own cursor, then close `con`.

    Return the threads' results and the wall time they took together.
    """

    def run(_k: int) -> Any:
        cursor = con.cursor()
        try:
            return work(cursor)
        finally:
            cursor.close()

    began = time.perf_counter()
    try:
        with ThreadPoolExecutor(count) as pool:
            done = list(pool.map(run, range(count)))
    finally:
        con.close()
    return done, time.perf_counter() - began


def _transaction(
    lock: threading.Lock, cur: duckdb.DuckDBPyConnection, write: Callable[..., object], *args: Any
) -> bool:
    """Apply `write(*args)` in one transaction under the writer lock; return if it committed."""
    with lock:
        cur.execute("BEGIN")
        try:
            write(*args)
            cur.execute("COMMIT")
        except duckdb.Error:
            cur.execute("ROLLBACK")
            return False
    return True


# --- small writes ----------------------------------------------------------------------------


def small_writes(db_file: Path, clients: int, seconds: float) -> dict[str, Any]:
    """Send the small-writes load to raw DuckDB for `seconds`: req/s and latency.

    `clients` threads (32, as the HTTP clients) each own a run and alternate, as bench/writes.py
    does, STEP_UPSERT and PROGRESS_UPDATE, each in its own BEGIN … COMMIT under one lock.
    Threads rather than one loop, so the p95 holds the queueing that 32 HTTP clients see too;
    the lock keeps the writes one at a time, so the rate is the one-thread rate (less the
    switching between threads, which the app pays as well).
    """
    con = connect(db_file)
    run_ids = [f"writes-raw-{k:03d}" for k in range(clients)]
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO test_runs (run_id, model_name, hardware, status, progress)"
        " VALUES (?, 'bench-writes', ['cpu'], 'running', 0.0)",
        [[rid] for rid in run_ids],
    )
    con.execute("COMMIT")
    lock = threading.Lock()
    owners = iter(run_ids)
    deadline = time.perf_counter() + seconds

    def client(cur: duckdb.DuckDBPyConnection) -> tuple[list[float], Counter[str], int]:
        rid = next(owners)
        latencies: list[float] = []
        kinds: Counter[str] = Counter()
        errors = n = 0
        while time.perf_counter() < deadline:
            progress = round((n % 100) / 100, 2)
            if n % 2 == 0:
                kind, sql = "step upsert", STEP_UPSERT
                params: list[Any] = [rid, STEPS[(n // 2) % len(STEPS)], "running", progress]
            else:
                kind, sql = "progress update", PROGRESS_UPDATE
                params = [progress, STEPS[n % len(STEPS)], rid]
            t0 = time.perf_counter()
            ok = _transaction(lock, cur, cur.execute, sql, params)
            latencies.append(time.perf_counter() - t0)
            kinds[kind] += 1
            errors += not ok
            n += 1
        return latencies, kinds, errors

    done, wall = _threads(con, clients, client)
    latencies = [t for lat, _, _ in done for t in lat]
    return {
        "clients": clients,
        "threads": clients,
        "seconds": round(wall, 3),
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "errors": sum(e for _, _, e in done),
        "by_kind": dict(sum((k for _, k, _ in done), Counter())),
        "request": summary_ms(latencies),
    }


# --- whole runs ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Rows:
    """One document as the statements' parameters and Arrow tables, built outside the lock."""

    run: list[Any]
    result: list[Any]
    tables: dict[str, tuple[tuple[str, ...], pa.Table]]


def _rows(doc: Document) -> _Rows:
    """Return the rows of a document for raw DuckDB (Arrow tables built here, as timed)."""
    run = doc.run
    duration = (run["completed_at"] - run["started_at"]).total_seconds()
    counts = Counter(d["status"] for d in doc.details)
    result = [
        doc.run_id,
        sum(counts[s] for s in PASSED),
        sum(counts[s] for s in FAILED),
        sum(counts[s] for s in SKIPPED),
    ]
    n = len(doc.details)
    cases = pa.Table.from_pylist(doc.details)
    cases = cases.append_column("run_id", pa.array([doc.run_id] * n, pa.string()))
    cases = cases.append_column("position", pa.array(range(n), pa.int64()))
    metrics = pa.Table.from_pylist([{"run_id": doc.run_id, **m} for m in doc.metrics])
    tags = pa.Table.from_pylist(
        [{"run_id": doc.run_id, "tag_name": k, "tag_value": v} for k, v in doc.tags.items()]
    )
    tables = {
        "test_run_cases": (CASE_COLUMNS, cases),
        "test_run_metrics": (METRIC_COLUMNS, metrics),
        "test_run_tags": (TAG_COLUMNS, tags),
    }
    fields = ("model_name", "hardware", "test_type", "status", "started_at", "completed_at")
    return _Rows(
        [doc.run_id, *(run[f] for f in fields), duration],
        result,
        {name: t for name, t in tables.items() if t[1].num_rows},
    )


def _write_run(cur: duckdb.DuckDBPyConnection, rows: _Rows) -> None:
    """Insert a run, its result row and one multi-row Arrow INSERT … SELECT per child table."""
    cur.execute(RUN_INSERT, rows.run)
    cur.execute(RESULT_INSERT, rows.result)
    for table, (columns, arrow) in rows.tables.items():
        cols = ", ".join(columns)
        cur.register("bench_rows", arrow)
        cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM bench_rows")
        cur.unregister("bench_rows")


def runs(db_file: Path, docs: list[Document], threads: int) -> dict[str, Any]:
    """Write each document as one transaction from `threads` threads through one lock: runs/s.

    Per run: BEGIN; INSERT the test_runs row; INSERT the test_run_results row (counts as the
    app derives them); one multi-row INSERT each for test_run_cases, test_run_metrics and
    test_run_tags as Arrow `INSERT … SELECT` (faster than a VALUES list: 30 against 41 ms a
    run of 50 + 20 + 5 rows here); COMMIT. The Arrow tables are built in the thread, before
    the lock, as the app parses a body before its writer; ids come from the tables' sequences.
    """
    con = connect(db_file)
    lock = threading.Lock()
    # First registration and first insert of each table, outside the timing (as store_vs_raw).
    warm = dataclasses.replace(docs[0], run_id=f"raw-warm-up-{threads}-{docs[0].run_id}")
    _transaction(lock, con, _write_run, con, _rows(warm))
    pending: Iterator[Document] = iter(docs)
    take = threading.Lock()

    def writer(cur: duckdb.DuckDBPyConnection) -> tuple[list[float], int]:
        latencies: list[float] = []
        errors = 0
        while True:
            with take:
                doc = next(pending, None)
            if doc is None:
                return latencies, errors
            t0 = time.perf_counter()
            rows = _rows(doc)
            errors += not _transaction(lock, cur, _write_run, cur, rows)
            latencies.append(time.perf_counter() - t0)

    done, wall = _threads(con, threads, writer)
    return {  # rows: per-test rows, as the HTTP ingest counts them
        **rates(len(docs), sum(len(d.details) for d in docs), wall),
        "threads": threads,
        "run": summary_ms([t for lat, _ in done for t in lat]),
        "errors": sum(e for _, e in done),
    }


# --- the read of one run ---------------------------------------------------------------------


def get_run(
    url: str, work: Path, db_file: Path, run_id: str, reps: int, sampler: RssSampler
) -> dict[str, Any]:
    """Time GET /run/{id} over HTTP next to the SQL it sends, replayed on raw DuckDB.

    The run must exist both on the server (posted through HTTP) and in `db_file` (written by
    `runs` from the same document). The SQL is captured as bench/queries.py does: the app in
    this process on `db_file` (closed by then); the replay is on a read-only connection to it.
    """
    point = queries.Endpoint("run/{id}", "GET", f"{PREFIX}/run/{run_id}")
    captured = queries.capture_sql(work, db_file, [point])
    con = queries.raw_connection(db_file)
    try:
        sampler.reset()
        figures = queries.measure(url, con, [point], captured, reps)[point.name]
    finally:
        con.close()
    return {**figures, "run_id": run_id, "peak_rss_mb": round(sampler.peak(), 1)}
