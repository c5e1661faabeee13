"""POST /api/{test,generator}/db/query: read-only SQL that answers, and every escape refused."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.support import make_settings

TEST_URL = "/api/test/db/query"
GEN_URL = "/api/generator/db/query"


def _record(client: TestClient, run_id: str, n_cases: int = 3) -> None:
    doc = {
        "run_id": run_id,
        "model_name": "bert",
        "hardware": ["cpu"],
        "status": "completed",
        "results": {
            "test_details": [
                {"name": f"t{i}", "status": "passed" if i % 3 else "failed", "duration_ms": i}
                for i in range(n_cases)
            ]
        },
        "tags": {"branch": "main"},
    }
    assert client.post("/api/test/db/runs", json=doc).status_code == 201


def _snapshot(settings: Settings) -> list[Any]:
    """Every table's rows and every sequence's value, read with a separate DuckDB process-local
    connection after the app has closed the file."""
    with duckdb.connect(str(settings.test_db_path), read_only=True) as conn:
        tables = [t for (t,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        data: list[Any] = [
            (t, sorted(map(str, conn.execute(f'SELECT * FROM "{t}"').fetchall())))
            for t in sorted(tables)
        ]
        data.append(conn.execute("SELECT * FROM duckdb_sequences()").fetchall())
        data.append(sorted(tables))
    return data


@pytest.fixture
def filled(settings: Settings) -> Settings:
    """Settings whose test database holds two recorded runs."""
    with TestClient(create_app(settings)) as client:
        _record(client, "r1")
        _record(client, "r2", n_cases=5)
    return settings


def test_select_answers_columns_and_rows(filled: Settings) -> None:
    with TestClient(create_app(filled)) as client:
        response = client.post(
            TEST_URL,
            json={
                "sql": "WITH c AS (SELECT run_id, count(*) AS n FROM test_run_cases GROUP BY 1)\n"
                "SELECT run_id, n FROM c ORDER BY run_id"
            },
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["name"] for c in body["columns"]] == ["run_id", "n"]
    assert body["rows"] == [["r1", 3], ["r2", 5]]
    assert body["truncated"] is False
    assert body["row_count"] == 2


def test_row_limit_truncates_and_says_so(filled: Settings) -> None:
    with TestClient(create_app(filled)) as client:
        response = client.post(
            TEST_URL, json={"sql": "SELECT * FROM range(100000) t(i) ORDER BY i", "limit": 7}
        )
    body = response.json()
    assert response.status_code == 200
    assert [r[0] for r in body["rows"]] == list(range(7))
    assert body["truncated"] is True
    assert response.headers["x-truncated"] == "true"


def test_csv_and_parquet_formats(filled: Settings) -> None:
    sql = "SELECT run_id, model_name FROM test_runs ORDER BY run_id"
    with TestClient(create_app(filled)) as client:
        as_csv = client.post(TEST_URL, params={"format": "csv"}, json={"sql": sql})
        as_parquet = client.post(TEST_URL, params={"format": "parquet"}, json={"sql": sql})
        bad = client.post(TEST_URL, params={"format": "xml"}, json={"sql": sql})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.splitlines() == ['"run_id","model_name"', '"r1","bert"', '"r2","bert"']
    table = pq.read_table(io.BytesIO(as_parquet.content))
    assert table.to_pydict() == {"run_id": ["r1", "r2"], "model_name": ["bert", "bert"]}
    assert bad.status_code == 422


def test_generator_sees_only_its_tables(filled: Settings) -> None:
    with TestClient(create_app(filled)) as client:
        own = client.post(GEN_URL, json={"sql": "SELECT count(*) AS n FROM generator_tasks"})
        other = client.post(GEN_URL, json={"sql": "SELECT * FROM test_runs"})
    assert own.status_code == 200, own.text
    assert own.json()["rows"] == [[0]]
    assert other.status_code == 400
    assert other.json()["code"] == "query_refused"
    assert "unknown table 'test_runs'" in other.json()["detail"]


ESCAPES = [
    # writes and DDL
    ("INSERT INTO test_runs (run_id) VALUES ('x')", "only SELECT"),
    ("UPDATE test_runs SET model_name = 'x'", "only SELECT"),
    ("DELETE FROM test_run_cases", "only SELECT"),
    ("DROP TABLE test_runs", "only SELECT"),
    ("CREATE TABLE x AS SELECT 1", "only SELECT"),
    ("CREATE MACRO m() AS 1", "only SELECT"),
    ("SELECT nextval('test_run_metrics_id_seq')", "nextval"),
    ("SELECT setval('test_run_metrics_id_seq', 99)", "setval"),
    # several statements, hidden after a first harmless one
    ("SELECT 1; DELETE FROM test_runs", "exactly one statement"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    # files
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("SELECT * FROM read_text('/etc/passwd')", "read_text"),
    ("SELECT * FROM read_blob('/etc/passwd')", "read_blob"),
    ("SELECT * FROM read_parquet('/tmp/*.parquet')", "read_parquet"),
    ("SELECT * FROM read_json_auto('/etc/hosts')", "read_json_auto"),
    ("SELECT * FROM glob('/etc/*')", "glob"),
    ("SELECT * FROM '/etc/passwd'", "unknown table"),
    ("FROM '/etc/passwd'", "unknown table"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "sniff_csv"),
    ("SELECT (SELECT count(*) FROM read_csv('/etc/passwd')) AS n", "read_csv"),
    ("WITH t AS (SELECT * FROM glob('/*')) SELECT * FROM t", "glob"),
    ("COPY test_runs TO '/tmp/out.csv'", "only SELECT"),
    ("EXPORT DATABASE '/tmp/out'", "only SELECT"),
    # other databases, catalogs, settings and metadata
    ("ATTACH '/tmp/other.duckdb' AS other", "only SELECT"),
    ("DETACH other", "only SELECT"),
    ("SELECT * FROM other.main.t", "bare name"),
    ("SELECT * FROM system.main.duckdb_settings()", "duckdb_settings"),
    ("SELECT * FROM temp.main.x", "bare name"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings"),
    ("SELECT * FROM duckdb_tables()", "duckdb_tables"),
    ("SELECT * FROM information_schema.tables", "bare name"),
    ("SELECT * FROM alembic_version_test_suite", "unknown table"),
    ("SELECT current_setting('memory_limit')", "current_setting"),
    ("SELECT getvariable('x')", "getvariable"),
    ("SELECT * FROM query('SELECT * FROM read_csv(''/etc/passwd'')')", "query"),
    ("SELECT * FROM query_table('test_runs')", "query_table"),
    ("SELECT * FROM json_execute_serialized_sql('x')", "json_execute_serialized_sql"),
    ("SELECT * FROM pragma_table_info('test_runs')", "pragma_table_info"),
    ("DESCRIBE test_runs", "SHOW_REF"),
    ("SUMMARIZE test_runs", "SHOW_REF"),
    ("SELECT * FROM (DESCRIBE test_runs)", "SHOW_REF"),
    ("SELECT * FROM test_runs AT (VERSION => 1)", "time travel"),
    ("SET memory_limit = '1GB'", "only SELECT"),
    ("RESET memory_limit", "only SELECT"),
    ("PRAGMA version", "only SELECT"),
    ("INSTALL httpfs", "only SELECT"),
    ("LOAD httpfs", "only SELECT"),
    ("SELECT st_point(1, 2)", "unknown function"),
    ("SELECT main.lower('x')", "qualified"),
    ("CHECKPOINT", "only SELECT"),
    ("BEGIN TRANSACTION", "only SELECT"),
    ("CALL duckdb_settings()", "only SELECT"),
    ("SELECT * FROM checkpoint()", "checkpoint"),
    ("SELECT pg_sleep(10)", "pg_sleep"),
    ("SELECT 1 FROM (SELECT 1) t, LATERAL read_csv('/etc/passwd')", "read_csv"),
    ("SELECT * FROM test_runs; --", "does not parse"),
    ("SELEKT 1", "does not parse"),
    # values of any size from one call (not interruptible, outside DuckDB's memory limit)
    ("SELECT length(repeat('x', 2000000000))", "repeat"),
    ("SELECT lpad('x', 2000000000, 'y')", "lpad"),
    ("SELECT printf('%2000000000d', 1)", "printf"),
    ("SELECT len(range(2000000000))", "range"),
    ("SELECT unnest(generate_series(1, 2000000000))", "generate_series"),
    ("SELECT unnest(range(2000000000))", "range"),
    # nested past the parser's depth limit, and subqueries nested deeper than Python recurses
    ("SELECT " + "(1 + " * 1100 + "1" + ")" * 1100, "does not parse|cannot be checked"),
    ("SELECT * FROM " + "(SELECT * FROM " * 1200 + "test_runs" + ")" * 1200, "nested|depth"),
]


def test_every_escape_is_refused_and_changes_nothing(filled: Settings) -> None:
    before = _snapshot(filled)
    with TestClient(create_app(filled)) as client:
        for sql, why in ESCAPES:
            response = client.post(TEST_URL, json={"sql": sql})
            assert response.status_code == 400, (sql, response.status_code, response.text)
            body = response.json()
            assert body["code"] in ("query_refused", "query_failed"), (sql, body)
            assert any(part in body["detail"] for part in why.split("|")), (sql, body["detail"])
        # the app still answers afterwards, on the same pooled connections
        ok = client.post(TEST_URL, json={"sql": "SELECT count(*) FROM test_runs"})
        assert ok.json()["rows"] == [[2]]
    assert _snapshot(filled) == before
    assert not Path("/tmp/out.csv").exists() or Path("/tmp/out.csv").stat().st_mtime < time.time()


def test_refusal_says_where(filled: Settings) -> None:
    with TestClient(create_app(filled)) as client:
        response = client.post(TEST_URL, json={"sql": "SELECT 1\nFROM   glob('/etc/*')"})
    assert response.status_code == 400
    assert "line 2, column 8" in response.json()["detail"]


def test_runaway_query_stops_at_the_time_limit(filled: Settings) -> None:
    before = _snapshot(filled)
    with TestClient(create_app(filled)) as client:
        started = time.perf_counter()
        response = client.post(
            TEST_URL,
            json={
                "sql": "SELECT count(*) FROM range(100000000) a, range(100000000) b "
                "WHERE a.range + b.range = -1",
                "timeout": 1,
            },
        )
        elapsed = time.perf_counter() - started
        assert response.status_code == 408, response.text
        assert response.json()["code"] == "query_timeout"
        assert "longer than 1 s" in response.json()["detail"]
        assert elapsed < 10
        # the interrupted connection went back to the pool and works
        again = client.post(TEST_URL, json={"sql": "SELECT count(*) FROM test_run_cases"})
        assert again.json()["rows"] == [[8]]
        assert client.get("/api/test/db/runs").status_code == 200
    assert _snapshot(filled) == before


def test_bounds_are_validated(filled: Settings) -> None:
    with TestClient(create_app(filled)) as client:
        cases = [
            {"sql": ""},
            {"sql": "SELECT 1", "limit": 0},
            {"sql": "SELECT 1", "limit": 100_001},
            {"sql": "SELECT 1", "timeout": 0},
            {"sql": "SELECT 1", "timeout": 31},
            {"sql": "SELECT 1", "extra": 1},
            {"sql": "SELECT 1 " + " " * 20_000},
        ]
        for body in cases:
            assert client.post(TEST_URL, json=body).status_code == 422, body


def test_query_needs_a_key_when_keys_are_set(tmp_path: Path, template_dbs: dict[str, Path]) -> None:
    settings = make_settings(tmp_path, template_dbs, api_keys=["k1"])
    with TestClient(create_app(settings)) as client:
        assert client.post(TEST_URL, json={"sql": "SELECT 1"}).status_code == 401
        wrong = client.post(TEST_URL, json={"sql": "SELECT 1"}, headers={"X-API-Key": "no"})
        assert wrong.status_code == 403
        ok = client.post(GEN_URL, json={"sql": "SELECT 1 AS one"}, headers={"X-API-Key": "k1"})
        assert ok.status_code == 200
        assert ok.json()["rows"] == [[1]]


def test_types_without_json_form_are_sent_as_text(filled: Settings) -> None:
    sql = (
        "SELECT INTERVAL 3 DAY AS i, 'ab'::BLOB AS b, 1.5::DECIMAL(4,2) AS d, "
        "TIMESTAMPTZ '2026-01-02 03:04:05+00' AS ts, [1, 2] AS l, {'a': 1} AS s, NULL AS n, "
        "'\\xFF\\x00'::BLOB AS raw, 'nan'::DOUBLE AS nan, '-inf'::DOUBLE AS ninf, "
        "uuid() AS u"
    )
    with TestClient(create_app(filled)) as client:
        response = client.post(TEST_URL, json={"sql": sql})
        nested_csv = client.post(TEST_URL, params={"format": "csv"}, json={"sql": sql})
    assert response.status_code == 200, response.text
    row = response.json()["rows"][0]
    assert row[2] == "1.50"
    assert row[3].startswith("2026-01-02T03:04:05")
    assert row[0] == [0, 3, 0]  # months, days, nanoseconds
    assert row[1] == "YWI="  # base64
    assert row[4:7] == [[1, 2], {"a": 1}, None]
    assert row[7] == "_wA="  # bytes that are not UTF-8
    assert row[8:10] == [None, None]  # JSON has no NaN or Infinity
    assert len(row[10]) == 36
    assert nested_csv.status_code == 400
    assert nested_csv.json()["code"] == "query_format"


def test_everyday_sql_is_allowed(filled: Settings) -> None:
    queries = [
        "SELECT status, count(*) AS n, avg(duration_ms), quantile_cont(duration_ms, 0.95) "
        "FROM test_run_cases GROUP BY ALL ORDER BY n DESC",
        "SELECT r.run_id, t.tag_value FROM test_runs r JOIN test_run_tags t USING (run_id) "
        "WHERE t.tag_name = 'branch'",
        "SELECT run_id, name, lag(status) OVER (PARTITION BY name ORDER BY run_id) "
        "FROM test_run_cases QUALIFY row_number() OVER (PARTITION BY run_id) <= 2",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) "
        "SELECT sum(i) FROM n",
        "SELECT unnest([1, 2]) AS u, date_trunc('day', now()) AS d, coalesce(NULL, 1) AS c",
        "SELECT i FROM range(3) t(i) UNION SELECT 10 ORDER BY 1",
        "FROM test_runs SELECT run_id ORDER BY run_id LIMIT 1",
        "SELECT * FROM main.test_runs WHERE run_id IN (SELECT run_id FROM test_run_cases)",
    ]
    with TestClient(create_app(filled)) as client:
        for sql in queries:
            response = client.post(TEST_URL, json={"sql": sql})
            assert response.status_code == 200, (sql, response.text)
            assert response.json()["rows"], sql


def test_oversized_results_are_refused(filled: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core import sql_query

    monkeypatch.setattr(sql_query, "MAX_RESULT_BYTES", 10_000)
    with TestClient(create_app(filled)) as client:
        response = client.post(
            TEST_URL, json={"sql": "SELECT * FROM range(100000)", "limit": 100000}
        )
    assert response.status_code == 400
    assert response.json()["code"] == "query_too_large"
