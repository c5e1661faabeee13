"""`BENCH_BACKEND=postgres`: the reads and the concurrent ingest on PostgreSQL next to DuckDB.

One run measures, on the same data set (the DuckDB file `bench/dataset.py` builds, copied into
PostgreSQL by the app's own `python -m app copy` code, which writes with `COPY ... FROM STDIN`):
- DuckDB, one uvicorn process: the queries (HTTP and their SQL replayed on raw DuckDB), the
  dashboard pages, and the concurrent ingest (runs of `small_details` rows, `small_clients`
  clients);
- PostgreSQL, `uvicorn --workers 1`: the same queries (their SQL, captured in-process on
  PostgreSQL, replayed on a raw psycopg connection) and pages, then the concurrent ingest;
- PostgreSQL, `--workers 2` and `--workers 4`: the concurrent ingest again.
Each measurement carries the load average (1, 5, 15 min) at its start and end: the machine is
shared. The server is BENCH_PG_URL (an admin URL: the bench creates its own database there and
drops it after), or a throwaway cluster (`tests.pg_cluster.Cluster`, as `make test-postgres`),
here with durable settings (fsync and synchronous_commit on, as DuckDB commits).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy.engine import make_url

from app import components
from app.core.copy import copy_database
from app.core.models import utcnow
from bench import dataset, ingest, pages, queries
from bench.report import log
from bench.scales import Scale
from bench.server import RssSampler, Server
from tests.pg_cluster import Cluster

SECTIONS = ("queries", "pages", "ingest")
PG_WORKERS = (1, 2, 4)
# The bench's cluster: durable commits like DuckDB's (the tests' cluster turns them off), and
# shared buffers that hold the full data set (the default 128 MB does not).
BENCH_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "1GB",
}
T = TypeVar("T")


def loadavg() -> list[float]:
    """Return the 1, 5 and 15 minute load averages (what `uptime` prints)."""
    return [round(x, 2) for x in os.getloadavg()]


def timed_load(what: Callable[[], T]) -> tuple[T, dict[str, list[float]]]:
    """Run `what`; return its result and the load averages at its start and end."""
    start = loadavg()
    result = what()
    return result, {"start": start, "end": loadavg()}


def _dsn(url: str) -> str:
    """Return a SQLAlchemy psycopg URL as a libpq DSN for psycopg.connect."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def database() -> Iterator[str]:
    """Yield the URL of a new, empty database on BENCH_PG_URL or a throwaway cluster."""
    admin = os.environ.get("BENCH_PG_URL")
    cluster = None
    if not admin:
        cluster = Cluster(BENCH_SETTINGS).start()
        admin = cluster.url
        log(f"PostgreSQL: throwaway cluster on port {cluster.port} ({cluster.bindir})")
    name = f"bench_{os.getpid()}"
    try:
        with psycopg.connect(_dsn(admin), autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            con.execute(f'CREATE DATABASE "{name}"')
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        if cluster is not None:
            cluster.stop()
        else:
            with psycopg.connect(_dsn(admin), autocommit=True) as con:
                con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_id_indexes(con: psycopg.Connection[Any]) -> list[str]:
    """Create an index on `run_id` of every table that has one but not as its primary key."""
    tables = con.execute(
        "SELECT c.table_name FROM information_schema.columns c"
        " WHERE c.table_schema = 'public' AND c.column_name = 'run_id'"
        " AND c.table_name <> 'test_runs' ORDER BY 1"
    ).fetchall()
    for (table,) in tables:
        con.execute(f'CREATE INDEX "bench_{table}_run_id" ON "{table}" (run_id)')
    return [t for (t,) in tables]


def load(data: Path, url: str, *, run_id_indexes: bool = False) -> dict[str, Any]:
    """Copy the DuckDB data set into PostgreSQL (`python -m app copy`'s code), then ANALYZE.

    With `run_id_indexes` (`--pg-run-id-indexes`, the experiment that led to revision ts_0003,
    which indexes cases and metrics by `run_id` on PostgreSQL; the unique keys of steps, tags,
    artifacts, results and batch links lead with it) every child table gets one more on `run_id`.
    """
    t0 = time.perf_counter()
    copied = copy_database(f"duckdb:///{data}", url, components.COMPONENTS)
    t1 = time.perf_counter()
    indexed: list[str] = []
    with psycopg.connect(_dsn(url), autocommit=True) as con:
        if run_id_indexes:
            indexed = _run_id_indexes(con)
        con.execute("VACUUM ANALYZE")
        size = con.execute("SELECT pg_database_size(current_database())").fetchone()
    t2 = time.perf_counter()
    rows = sum(t.copied for t in copied)
    return {
        "how": "app.core.copy.copy_database (python -m app copy): COPY FROM STDIN, 50,000 rows"
        " a transaction; then VACUUM ANALYZE",
        "rows": rows,
        "copy_s": round(t1 - t0, 1),
        "copy_rows_per_s": round(rows / (t1 - t0)),
        "vacuum_analyze_s": round(t2 - t1, 1),
        "bench_run_id_indexes": indexed,
        "database_mb": round(int(size[0]) / 1e6, 1) if size else None,
    }


def raw_connection(url: str) -> psycopg.Connection[Any]:
    """Open a raw psycopg connection (autocommit, UTC, as the app's) for the replays."""
    con = psycopg.connect(_dsn(url), autocommit=True)
    con.execute("SET TimeZone='UTC'")
    return con


def _log_queries(label: str, figures: dict[str, Any]) -> None:
    for name, q in figures.items():
        log(
            f"  {label} {name}: http p50 {q['http']['p50_ms']} p95 {q['http']['p95_ms']} ms,"
            f" raw p50 {q['raw']['p50_ms']} p95 {q['raw']['p95_ms']} ms"
        )


def _served(
    server: Server,
    con: Any,
    scale: Scale,
    captured: dict[str, list[queries.Statement]],
    docs: list[ingest.Document],
    only: Sequence[str],
    label: str,
) -> dict[str, Any]:
    """Measure the asked sections on one started server; return them with their loads."""
    points = queries.endpoints(scale)
    out: dict[str, Any] = {"workers": server.workers}
    with RssSampler(server.pid) as sampler:
        out["server_idle_rss_mb"] = round(sampler.current(), 1)
        if "queries" in only and captured:
            log(f"{label}: query latency, HTTP vs the same SQL on the raw connection")
            out["queries"], out["queries_load"] = timed_load(
                lambda: queries.measure(server.url, con, points, captured, scale.query_reps)
            )
            _log_queries(label, out["queries"])
        if "pages" in only:
            log(f"{label}: dashboard pages")
            out["pages"], out["pages_load"] = timed_load(lambda: pages.measure(server.url, scale))
        if "ingest" in only:
            clients = scale.small_clients
            log(f"{label}: {len(docs)} runs of {scale.small_details}, {clients} clients")
            out["ingest"], out["ingest_load"] = timed_load(
                lambda: ingest.http_concurrent(server.url, docs, scale.small_clients, sampler)
            )
            log(f"  {out['ingest']} load {out['ingest_load']}")
    return out


def run(
    scale: Scale,
    work: Path,
    data: Path,
    anchor: Any,
    only: Sequence[str] = SECTIONS,
    pg_workers: Sequence[int] = PG_WORKERS,
    *,
    run_id_indexes: bool = False,
) -> dict[str, Any]:
    """Measure DuckDB (one process) and PostgreSQL (1, 2, 4 workers) on the data set `data`.

    The reads (queries, pages) run on the first of `pg_workers`, the ingest on each.
    """
    points = queries.endpoints(scale)
    results: dict[str, Any] = {"backend": "postgres"}

    def docs(kind: str) -> list[ingest.Document]:
        return ingest.documents(scale, anchor, kind, scale.small_runs, scale.small_details)

    # DuckDB: exactly as the default bench (served copy, raw read-only copy for the replays).
    served = work / "duckdb" / "test_runs.duckdb"
    served.parent.mkdir(parents=True)
    shutil.copy(data, served)
    raw_copy = work / "raw.duckdb"
    shutil.copy(data, raw_copy)
    now = utcnow()  # both backends' reports read the same windows (queries.REPORT_CLOCKS)
    captured = queries.capture_sql(work, raw_copy, points, now=now) if "queries" in only else {}
    con = queries.raw_connection(raw_copy)
    try:
        with Server(served.parent, served) as server:
            results["duckdb"] = _served(server, con, scale, captured, docs("small"), only, "duckdb")
    finally:
        con.close()

    # The copy wants its source at head: a data set cached before a new revision is migrated
    # first (on a copy of its own; the cached file stays as it is).
    source = work / "pg_source.duckdb"
    shutil.copy(data, source)
    dataset.migrate(source)
    with database() as url:
        log("PostgreSQL: loading the data set (python -m app copy from the DuckDB file)")
        loaded, loads = timed_load(lambda: load(source, url, run_id_indexes=run_id_indexes))
        results["postgres_load"] = {**loaded, "load": loads}
        log(f"  {results['postgres_load']}")
        captured = queries.capture_sql(work, None, points, url, now) if "queries" in only else {}
        pg = raw_connection(url)
        try:
            results["postgres"] = []
            for k, workers in enumerate(pg_workers):
                asked = only if k == 0 else [s for s in only if s == "ingest"]
                if not asked:
                    continue
                folder = work / f"postgres-w{workers}"
                folder.mkdir()
                label = f"postgres --workers {workers}"
                with Server(folder, workers=workers, database_url=url) as server:
                    results["postgres"].append(
                        _served(server, pg, scale, captured, docs(f"pg-w{workers}"), asked, label)
                    )
        finally:
            pg.close()
    return results


# --- the printed section ------------------------------------------------------------------


def _load(loads: dict[str, list[float]] | None) -> str:
    if not loads:
        return ""
    return f"{'/'.join(map(str, loads['start']))} → {'/'.join(map(str, loads['end']))}"


def _ingest_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| Backend | Workers | Runs | Rows | Wall s | Runs/s | Rows/s | p50 ms | p95 ms"
        " | Errors | Peak RSS MB | Load 1/5/15 start → end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    served = [("DuckDB", results.get("duckdb") or {})]
    served += [("PostgreSQL", pg) for pg in results.get("postgres", [])]
    for backend, figures in served:
        i = figures.get("ingest")
        if not i:
            continue
        lines.append(
            f"| {backend} | {figures['workers']} | {i['runs']:,} | {i['rows']:,} | {i['wall_s']}"
            f" | {i['runs_per_s']} | {i['rows_per_s']:,} | {i['request']['p50_ms']}"
            f" | {i['request']['p95_ms']} | {i['errors']} | {i['peak_rss_mb']}"
            f" | {_load(figures.get('ingest_load'))} |"
        )
    return lines


def _pn(figures: dict[str, Any], side: str = "http") -> str:
    return f"{figures[side]['p50_ms']} / {figures[side]['p95_ms']}"


def _side_by_side(
    duck: dict[str, Any], pg: dict[str, Any], header: str, cells: Callable[[Any], list[str]]
) -> list[str]:
    """Rows of one section (queries or pages): DuckDB's cells, PostgreSQL's, the p50 ratio."""
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for name, d in duck.items():
        p = pg.get(name)
        if p is None:
            continue
        ratio = round(p["http"]["p50_ms"] / d["http"]["p50_ms"], 2) if d["http"]["p50_ms"] else ""
        lines.append(f"| {name} | {' | '.join(cells(d) + cells(p))} | {ratio} |")
    return lines


QUERIES_HEADER = (
    "| Endpoint | DuckDB HTTP p50 / p95 ms | raw DuckDB p50 / p95 ms"
    " | PostgreSQL HTTP p50 / p95 ms | raw psycopg p50 / p95 ms | PG / DuckDB (HTTP p50) |"
)
PAGES_HEADER = "| Page | DuckDB p50 / p95 ms | PostgreSQL p50 / p95 ms | PG / DuckDB (p50) |"


def markdown(results: dict[str, Any], results_file: str) -> str:
    """Return the comparison as Markdown tables (ingest, queries, pages) with their loads."""
    duck = results.get("duckdb") or {}
    pg = next(iter(results.get("postgres", [])), {})
    scale = results["scale"]
    out = [
        f"### `{scale['name']}` scale, PostgreSQL next to DuckDB — {results['date']}",
        "",
        f"Results file: `{results_file}`. Wall time {results['wall_s']} s.",
    ]
    if "postgres_load" in results:
        out += ["", f"PostgreSQL load: {results['postgres_load']}"]
    out += ["", "Concurrent ingest (`POST /runs`):", "", *_ingest_table(results)]
    sections: list[tuple[str, str, Callable[[Any], list[str]]]] = [
        ("queries", QUERIES_HEADER, lambda f: [_pn(f), _pn(f, "raw")]),
        ("pages", PAGES_HEADER, lambda f: [_pn(f)]),
    ]
    for key, header, cells in sections:
        if duck.get(key) and pg.get(key):
            out += [
                "",
                f"{key.capitalize()} ({scale['query_reps']} reps; DuckDB load"
                f" {_load(duck.get(key + '_load'))},"
                f" PostgreSQL load {_load(pg.get(key + '_load'))}):",
                "",
                *_side_by_side(duck[key], pg[key], header, cells),
            ]
    return "\n".join(out)
