"""3. Query latency through HTTP next to the same SQL replayed directly on the database.

DuckDB: a read-only raw `duckdb` connection; PostgreSQL (`BENCH_BACKEND=postgres`): a raw
psycopg connection (`bench/postgres.py`). The statements are captured with the driver's own
parameters, so they replay unchanged on either.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import duckdb
import httpx
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.core.config import Settings
from app.main import create_app
from bench.dataset import run_id
from bench.scales import Scale
from bench.stats import ratio, summary_ms

PREFIX = "/api/test/db"
SEARCH = {"query": "llama", "limit": 100}
HISTORY_TEST = "tests/test_bert.py::test_case_0001"


@dataclass(frozen=True)
class Endpoint:
    """A read the bench times: its name and the HTTP request."""

    name: str
    method: str
    path: str
    body: dict[str, Any] | None = None

    def send(self, client: Any) -> Any:
        """Send the request with an httpx-compatible client."""
        if self.method == "POST":
            return client.post(self.path, json=self.body)
        return client.get(self.path)


def endpoints(scale: Scale) -> list[Endpoint]:
    """Return the endpoints of the issue; the page offset is clamped to the data size."""
    offset = max(0, min(10_000, scale.runs - 50))
    page = f"runs?limit=50&offset={offset}"
    return [
        Endpoint("models/stats", "GET", f"{PREFIX}/models/stats"),
        Endpoint("hardware/stats", "GET", f"{PREFIX}/hardware/stats"),
        Endpoint("performance?days=30", "GET", f"{PREFIX}/performance?days=30"),
        Endpoint(page, "GET", f"{PREFIX}/{page}"),
        Endpoint("run/{id}", "GET", f"{PREFIX}/run/{run_id(scale.runs // 2)}"),
        Endpoint("search", "POST", f"{PREFIX}/search", SEARCH),
        # Reports (issue 10): each is measured next to its own SQL like the reads above.
        Endpoint("tests", "GET", f"{PREFIX}/tests?days=30"),
        Endpoint("tests/history", "GET", f"{PREFIX}/tests/history?test_id={HISTORY_TEST}"),
        Endpoint("flaky", "GET", f"{PREFIX}/flaky?days=30"),
        Endpoint("regressions", "GET", f"{PREFIX}/regressions?days=7&baseline_days=28"),
        Endpoint(
            "compare",
            "GET",
            f"{PREFIX}/compare?base={run_id(0)}&head={run_id(1)}&fail_on=new_failures",
        ),
        Endpoint("trends", "GET", f"{PREFIX}/trends?bucket=day&days=90&metric=latency_ms"),
    ]


Statement = tuple[str, Any]


# Where the reports read the clock for their windows ("the last N days"): frozen while SQL is
# captured, so two captures (DuckDB's and PostgreSQL's, minutes apart) ask for the same rows.
REPORT_CLOCKS = ("app.core.stats.utcnow", "app.components.test_suite.service.utcnow")


def capture_sql(
    work: Path,
    db_file: Path | None,
    points: list[Endpoint],
    database_url: str | None = None,
    now: datetime | None = None,
) -> dict[str, list[Statement]]:
    """Serve the app in this process on `db_file` (or `database_url`); record each read's SQL.

    With `now`, the reports' windows end at `now` (REPORT_CLOCKS), not at the capture's time.
    """
    with ExitStack() as stack:
        for clock in REPORT_CLOCKS if now is not None else ():
            stack.enter_context(mock.patch(clock, return_value=now))
        return _capture(work, db_file, points, database_url)


def _capture(
    work: Path, db_file: Path | None, points: list[Endpoint], database_url: str | None
) -> dict[str, list[Statement]]:
    urls = {"test_database_url": database_url, "generator_database_url": database_url}
    settings = Settings(
        **(urls if database_url else {"test_db_path": db_file}),
        generator_db_path=work / "capture_generator.duckdb",
        export_dir=work / "capture_exports",
        output_dir=work / "capture_generated",
        results_dir=work / "capture_results",
        backup_before_migrate=False,
    )
    app = create_app(settings)
    captured: dict[str, list[Statement]] = {}
    current: list[Statement] | None = None

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if current is not None:
            current.append((statement, params))

    # The app accepts only its served hosts (APP_ALLOWED_HOSTS): talk to it as 127.0.0.1.
    with TestClient(app, base_url="http://127.0.0.1") as client:
        engine = app.ctx.database("test_suite").engine
        event.listen(engine, "before_cursor_execute", record)
        for point in points:
            response = point.send(client)  # warm-up: first connection, dialect initialisation
            response.raise_for_status()
            current = captured[point.name] = []
            point.send(client).raise_for_status()
            current = None
        event.remove(engine, "before_cursor_execute", record)
    return captured


def _replay(con: Any, statements: list[Statement], times: list[list[float]] | None = None) -> int:
    """Run the statements and fetch every row; return the row count (and time each one).

    `con` is a DuckDB connection or a psycopg one: both have `execute(sql, params)` returning
    something with `description` (None when the statement returns no rows) and `fetchall()`.
    """
    rows = 0
    for i, (statement, params) in enumerate(statements):
        t0 = time.perf_counter()
        result = con.execute(statement, params) if params else con.execute(statement)
        if result.description is not None:
            rows += len(result.fetchall())
        if times is not None:
            times[i].append(time.perf_counter() - t0)
    return rows


def _head(statement: str) -> str:
    """Return a statement's first words and its main table, for the results file."""
    words = " ".join(statement.split())
    verb = words.split(" ", 1)[0]
    table = words.split(" FROM ", 1)[1].split(" ", 1)[0] if " FROM " in words else ""
    return f"{verb} … FROM {table}" if table else words[:60]


def raw_connection(db_file: Path) -> duckdb.DuckDBPyConnection:
    """Open a read-only DuckDB connection on a copy of the data set (UTC, as the app's)."""
    con = duckdb.connect(str(db_file), read_only=True)
    con.execute("SET TimeZone='UTC'")
    return con


def measure(
    url: str,
    con: Any,
    points: list[Endpoint],
    captured: dict[str, list[Statement]],
    reps: int,
) -> dict[str, Any]:
    """Time each endpoint over HTTP and its SQL on the raw connection, interleaved, `reps` times."""
    http: dict[str, list[float]] = {p.name: [] for p in points}
    raw: dict[str, list[float]] = {p.name: [] for p in points}
    per_statement: dict[str, list[list[float]]] = {
        p.name: [[] for _ in captured[p.name]] for p in points
    }
    sizes: dict[str, int] = {}
    raw_rows: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        for point in points:  # warm-up of both sides
            point.send(client).raise_for_status()
            _replay(con, captured[point.name])
        for _ in range(reps):
            for point in points:
                t0 = time.perf_counter()
                response = point.send(client)
                body = response.content
                t1 = time.perf_counter()
                raw_rows[point.name] = _replay(con, captured[point.name], per_statement[point.name])
                t2 = time.perf_counter()
                response.raise_for_status()
                http[point.name].append(t1 - t0)
                raw[point.name].append(t2 - t1)
                sizes[point.name] = len(body)
    out: dict[str, Any] = {}
    for point in points:
        h = summary_ms(http[point.name])
        r = summary_ms(raw[point.name])
        out[point.name] = {
            "request": f"{point.method} {point.path}"
            + (f" {json.dumps(point.body)}" if point.body else ""),
            "http": h,
            "raw": r,
            "statements": len(captured[point.name]),
            "raw_statements_p50_ms": [
                [_head(statement), summary_ms(times)["p50_ms"]]
                for (statement, _), times in zip(
                    captured[point.name], per_statement[point.name], strict=True
                )
            ],
            "raw_rows": raw_rows[point.name],
            "response_bytes": sizes[point.name],
            "ratio_p50": ratio(h["p50_ms"], r["p50_ms"]),
            "ratio_p95": ratio(h["p95_ms"], r["p95_ms"]),
            "limit_p50_ms": round(1.5 * r["p50_ms"] + 5.0, 2),
            "limit_p95_ms": round(1.5 * r["p95_ms"] + 5.0, 2),
        }
    return out
