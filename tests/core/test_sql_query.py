"""POST /api/{test,generator}/db/query: read-only SQL that answers, and every escape refused.

Runs on both backends (`--backend postgres`: this file is in the Makefile's PG_SUITES): the
escapes are refused by the same check on both; the SQL that differs is chosen by `on_postgres()`.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from app.core import sql_query
from app.core.config import Settings
from app.main import create_app
from tests.support import make_settings, on_postgres

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
    """Every table's rows and every sequence's value, read on a connection of its own after the
    app has closed the database (DuckDB: the file, read-only; PostgreSQL: the test database)."""
    if on_postgres():
        return _pg_snapshot(settings)
    with duckdb.connect(str(settings.test_db_path), read_only=True) as conn:
        tables = [t for (t,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        data: list[Any] = [
            (t, sorted(map(str, conn.execute(f'SELECT * FROM "{t}"').fetchall())))
            for t in sorted(tables)
        ]
        data.append(conn.execute("SELECT * FROM duckdb_sequences()").fetchall())
        data.append(sorted(tables))
    return data


def _pg_snapshot(settings: Settings) -> list[Any]:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url("test_suite")).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            ).fetchall()
        ]
        data: list[Any] = [
            (t, sorted(map(str, conn.execute(f'SELECT * FROM "{t}"').fetchall())))  # type: ignore[call-overload]
            for t in sorted(tables)
        ]
        sequences = conn.execute("SELECT sequencename FROM pg_sequences ORDER BY 1").fetchall()
        data.append(
            [
                (n, conn.execute(f'SELECT last_value, is_called FROM "{n}"').fetchone())
                for (n,) in sequences
            ]  # type: ignore[call-overload]
        )
        data.append(conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone())
        data.append(sorted(tables))
    return data


SCHEMA = "public" if on_postgres() else "main"


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
            TEST_URL,
            json={"sql": "SELECT * FROM generate_series(0, 99999) t(i) ORDER BY i", "limit": 7},
        )
        # 10^10 rows: the limit is in the plan, so both backends stop after 8
        huge = client.post(
            TEST_URL,
            json={
                "sql": "SELECT a.i, b.j FROM generate_series(1, 100000) a(i), "
                "generate_series(1, 100000) b(j)",
                "limit": 7,
                "timeout": 10,
            },
        )
    body = response.json()
    assert response.status_code == 200
    assert [r[0] for r in body["rows"]] == list(range(7))
    assert body["truncated"] is True
    assert response.headers["x-truncated"] == "true"
    assert huge.status_code == 200, huge.text
    assert huge.json()["row_count"] == 7 and huge.json()["truncated"] is True


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
    # PostgreSQL: files, programs, writes hidden in a query, locks, settings, catalogs
    ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
    ("SELECT * FROM pg_read_file('/etc/passwd')", "pg_read_file"),
    ("SELECT pg_ls_dir('/')", "pg_ls_dir"),
    ("COPY test_runs FROM '/etc/passwd'", "only SELECT"),
    ("COPY (SELECT 1) TO PROGRAM 'touch /tmp/curious_pwned'", "only SELECT|does not parse"),
    ("WITH x AS (DELETE FROM test_run_cases RETURNING *) SELECT count(*) FROM x", "DELETE"),
    ("WITH x AS (UPDATE test_runs SET model_name = 'x' RETURNING 1) SELECT * FROM x", "UPDATE"),
    ("WITH x AS (INSERT INTO test_run_tags VALUES (1) RETURNING 1) SELECT * FROM x", "INSERT"),
    ("SELECT * FROM (WITH y AS (DELETE FROM test_runs RETURNING 1) SELECT * FROM y) q", "DELETE"),
    ("SELECT * FROM test_runs FOR UPDATE", "does not parse"),
    ("SELECT * FROM test_runs FOR SHARE NOWAIT", "does not parse"),
    ("SELECT * INTO stolen FROM test_runs", "does not parse"),
    ("SELECT set_config('default_transaction_read_only', 'off', false)", "set_config"),
    ("SELECT pg_sleep_for('10 seconds')", "pg_sleep_for"),
    ("SELECT * FROM generator_tasks", "unknown table 'generator_tasks'"),
    ("SELECT * FROM public.generator_tasks", "only this component's tables|unknown table"),
    ("SELECT * FROM pg_catalog.pg_authid", "bare name"),
    ("SELECT * FROM pg_class", "unknown table"),
    ("SELECT * FROM pg_stat_activity", "unknown table"),
    ("SELECT * FROM information_schema.columns", "bare name"),
    ("TABLE pg_shadow", "unknown table"),
    ("SELECT 'pg_authid'::regclass", "regclass"),
    ("SELECT 1::pg_catalog.int4", "int4"),
    ("SELECT OPERATOR(pg_catalog.+)(1, 2)", "qualified operators"),
    ("SELECT 1; COMMIT; DELETE FROM test_runs", "exactly one statement"),
    ("SELECT 1 \\; DELETE FROM test_runs", "does not parse"),
    ("SELECT 'a\\', pg_read_file('/etc/passwd') --'", "pg_read_file"),
    ("SELECT E'\\'', pg_read_file('/etc/passwd') --'", "pg_read_file"),
    ("SELECT /* /* */ pg_read_file('/etc/passwd') */ 1 AS one FROM pg_class", "unknown table"),
    ("SELECT $q$ $$ $q$, lo_import('/etc/passwd')", "lo_import"),
    ("DO $$BEGIN DELETE FROM test_runs; END$$", "does not parse"),
    ("LISTEN curious", "does not parse|only SELECT"),
    ("NOTIFY curious", "does not parse|only SELECT"),
    ("SET ROLE postgres", "does not parse|only SELECT"),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "does not parse|only SELECT"),
    ("VACUUM test_runs", "only SELECT"),
    ("LOCK TABLE test_runs", "does not parse|only SELECT"),
    ("PREPARE p AS DELETE FROM test_runs", "only SELECT"),
    ("EXECUTE p", "only SELECT"),
    ("DISCARD ALL", "does not parse|only SELECT"),
    ("REFRESH MATERIALIZED VIEW v", "does not parse|only SELECT"),
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
        wrong = []  # every escape that was not refused as expected, reported together
        for sql, why in ESCAPES:
            response = client.post(TEST_URL, json={"sql": sql})
            body = response.json()
            if not (
                response.status_code == 400
                and body.get("code") in ("query_refused", "query_failed")
                and any(part in body["detail"] for part in why.split("|"))
            ):
                wrong.append((sql[:80], response.status_code, body.get("detail", body)))
        assert wrong == [], "\n".join(map(repr, wrong))
        # the app still answers afterwards, on the same pooled connections
        ok = client.post(TEST_URL, json={"sql": "SELECT count(*) FROM test_runs"})
        assert ok.json()["rows"] == [[2]]
    assert _snapshot(filled) == before
    assert not Path("/tmp/out.csv").exists() or Path("/tmp/out.csv").stat().st_mtime < time.time()
    assert not Path("/tmp/curious_pwned").exists()


# One call per PostgreSQL family the deny list names (refused by name on both backends).
FAMILY_CALLS = {
    "files": "SELECT pg_stat_file('/etc/passwd')",
    "large objects": "SELECT lo_export(1, '/tmp/curious_lo')",
    "other databases": "SELECT dblink_exec('dbname=postgres', 'DROP TABLE test_runs')",
    "sql in a string": "SELECT query_to_xml('DELETE FROM test_runs RETURNING 1', true, true, '')",
    "settings": "SELECT current_setting('data_directory')",
    "sleep": "SELECT pg_sleep_until(now() + interval '1 minute')",
    "other sessions": "SELECT pg_terminate_backend(pid) FROM test_runs",
    "advisory locks": "SELECT pg_advisory_lock(1)",
    "transaction ids": "SELECT txid_current()",
    "sequences": "SELECT nextval('test_run_metrics_id_seq')",
    "catalog lookups": "SELECT to_regclass('pg_authid')",
}


@pytest.mark.parametrize("family", sorted(sql_query.PG_DENIED))
def test_each_postgres_function_family_is_denied(filled: Settings, family: str) -> None:
    sql = FAMILY_CALLS[family]
    name = sql.split("(")[0].split()[-1]
    assert name in sql_query.PG_DENIED[family]
    with TestClient(create_app(filled)) as client:
        response = client.post(TEST_URL, json={"sql": sql})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "query_refused"
    assert f"function {name!r} is not allowed" in response.json()["detail"]


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
                "sql": "SELECT count(*) FROM generate_series(1, 1000000) a(i), "
                "generate_series(1, 1000000) b(j) WHERE a.i + b.j = -1",
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


DUCKDB_TYPES = (
    "SELECT INTERVAL 3 DAY AS i, 'ab'::BLOB AS b, 1.5::DECIMAL(4,2) AS d, "
    "TIMESTAMPTZ '2026-01-02 03:04:05+00' AS ts, [1, 2] AS l, {'a': 1} AS s, NULL AS n, "
    "'\\xFF\\x00'::BLOB AS raw, 'nan'::DOUBLE AS nan, '-inf'::DOUBLE AS ninf, "
    "uuid() AS u"
)
POSTGRES_TYPES = (
    "SELECT INTERVAL '3 days' AS i, 'ab'::bytea AS b, 1.5::numeric(4,2) AS d, "
    "TIMESTAMPTZ '2026-01-02 03:04:05+00' AS ts, ARRAY[1, 2] AS l, '{\"a\": 1}'::jsonb AS s, "
    "NULL AS n, '\\xff00'::bytea AS raw, 'nan'::float8 AS nan, '-inf'::float8 AS ninf, "
    "gen_random_uuid() AS u"
)


def test_types_without_json_form_are_sent_as_text(filled: Settings) -> None:
    sql = POSTGRES_TYPES if on_postgres() else DUCKDB_TYPES
    with TestClient(create_app(filled)) as client:
        response = client.post(TEST_URL, json={"sql": sql})
        nested_csv = client.post(TEST_URL, params={"format": "csv"}, json={"sql": sql})
    assert response.status_code == 200, response.text
    row = response.json()["rows"][0]
    assert row[2] == "1.50"
    assert row[3].startswith("2026-01-02T03:04:05")
    # PostgreSQL: intervals and JSON as PostgreSQL writes them (README, docs/api.md)
    assert row[0] == ("3 days" if on_postgres() else [0, 3, 0])  # DuckDB: months, days, ns
    assert row[1] == "YWI="  # base64
    assert row[4:7] == [[1, 2], '{"a": 1}' if on_postgres() else {"a": 1}, None]
    assert row[7] == "_wA="  # bytes that are not UTF-8
    assert row[8:10] == [None, None]  # JSON has no NaN or Infinity
    assert len(row[10]) == 36
    types = {c["name"]: c["type"] for c in response.json()["columns"]}
    assert types["d"] == "decimal128(4, 2)" and types["ts"] == "timestamp[us, tz=Etc/UTC]"
    assert nested_csv.status_code == 400
    assert nested_csv.json()["code"] == "query_format"


def test_same_columns_same_types_on_both_backends(filled: Settings) -> None:
    sql = (
        "SELECT r.run_id, r.model_name, count(c.name) AS n, avg(c.duration_ms) AS mean, "
        "min(r.created_at) AS first, sum(CASE WHEN c.status = 'passed' THEN 1 ELSE 0 END) AS ok "
        "FROM test_runs r JOIN test_run_cases c USING (run_id) GROUP BY 1, 2 ORDER BY 1"
    )
    with TestClient(create_app(filled)) as client:
        response = client.post(TEST_URL, json={"sql": sql})
    assert response.status_code == 200, response.text
    body = response.json()
    types = [c["type"] for c in body["columns"]]
    assert types[:4] == ["string", "string", "int64", "double"]
    assert types[4].startswith("timestamp[us")
    rows = [[*r[:4], r[5]] for r in body["rows"]]
    # sum of an integer: DuckDB's HUGEINT is a decimal string, PostgreSQL's sum(int) a bigint
    ok = (2, 3) if on_postgres() else ("2", "3")
    assert rows == [["r1", "bert", 3, 1.0, ok[0]], ["r2", "bert", 5, 2.0, ok[1]]]


def test_percent_signs_and_dollar_quotes_reach_the_database_unchanged(filled: Settings) -> None:
    sql = (
        "SELECT '100%' AS a, 'x%sy' AS b, '%(name)s' AS c, $q$it's$q$ AS d, "
        "count(*) AS n FROM test_run_cases WHERE name LIKE 't%'"
    )
    with TestClient(create_app(filled)) as client:
        response = client.post(TEST_URL, json={"sql": sql})
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [["100%", "x%sy", "%(name)s", "it's", 8]]


def test_a_query_the_database_rejects_is_a_400_with_its_message(filled: Settings) -> None:
    # Both pass the check; each backend fails one of them with its own message.
    bad = ["SELECT 1 + 'x'::INTEGER", "SELECT no_such_column FROM test_runs"]
    if on_postgres():
        bad.append("SELECT * FROM range(3)")  # a DuckDB table function PostgreSQL lacks
        bad.append("SELECT list_value(1, 2)")  # a DuckDB function PostgreSQL lacks
    with TestClient(create_app(filled)) as client:
        for sql in bad:
            response = client.post(TEST_URL, json={"sql": sql})
            assert response.status_code == 400, (sql, response.text)
            assert response.json()["code"] == "query_failed", (sql, response.json())
            assert response.json()["detail"].startswith("the query failed: "), sql
        assert client.post(TEST_URL, json={"sql": "SELECT 1"}).status_code == 200


EVERYDAY = [
    "SELECT r.run_id, t.tag_value FROM test_runs r JOIN test_run_tags t USING (run_id) "
    "WHERE t.tag_name = 'branch'",
    "SELECT run_id, name, lag(status) OVER (PARTITION BY name ORDER BY run_id) FROM test_run_cases",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) "
    "SELECT sum(i) FROM n",
    "SELECT date_trunc('day', now()) AS d, coalesce(NULL, 1) AS c, lower('X') AS l",
    f"SELECT * FROM {SCHEMA}.test_runs WHERE run_id IN (SELECT run_id FROM test_run_cases)",
    "SELECT status, count(*) FILTER (WHERE duration_ms > 1) AS slow, "
    "percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50 "
    "FROM test_run_cases GROUP BY status",
    "SELECT DISTINCT ON (run_id) run_id, name FROM test_run_cases ORDER BY run_id, name",
    "SELECT string_agg(name, ',' ORDER BY name) FROM test_run_cases WHERE name ILIKE 'T%'",
    "SELECT i FROM generate_series(1, 3) t(i) UNION SELECT 10 ORDER BY 1",
    "SELECT unnest(ARRAY[1, 2]) AS u",
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(n, s)",
    "SELECT CAST(created_at AS DATE), run_id::text FROM test_runs",
]
DUCKDB_EVERYDAY = [
    "SELECT status, count(*) AS n, avg(duration_ms), quantile_cont(duration_ms, 0.95) "
    "FROM test_run_cases GROUP BY ALL ORDER BY n DESC",
    "SELECT run_id, name FROM test_run_cases QUALIFY row_number() OVER (PARTITION BY run_id) <= 2",
    "SELECT unnest([1, 2]) AS u",
    "SELECT i FROM range(3) t(i) UNION SELECT 10 ORDER BY 1",
    "FROM test_runs SELECT run_id ORDER BY run_id LIMIT 1",
]


def test_everyday_sql_is_allowed(filled: Settings) -> None:
    queries = EVERYDAY + ([] if on_postgres() else DUCKDB_EVERYDAY)
    with TestClient(create_app(filled)) as client:
        for sql in queries:
            response = client.post(TEST_URL, json={"sql": sql})
            assert response.status_code == 200, (sql, response.text)
            assert response.json()["rows"], sql


def test_oversized_results_are_refused(filled: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_query, "MAX_RESULT_BYTES", 10_000)
    with TestClient(create_app(filled)) as client:
        response = client.post(
            TEST_URL, json={"sql": "SELECT * FROM generate_series(1, 100000)", "limit": 100000}
        )
    assert response.status_code == 400
    assert response.json()["code"] == "query_too_large"


def test_the_run_alone_refuses_writes(filled: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Layer 3 on its own, should the check miss one: the read-only transaction refuses.
    monkeypatch.setattr(sql_query._Checker, "walk", lambda self, tree: None)
    before = _snapshot(filled)
    with TestClient(create_app(filled)) as client:
        for sql in (
            "SELECT nextval('test_run_metrics_id_seq')",
            "WITH x AS (DELETE FROM test_run_cases RETURNING 1) SELECT count(*) FROM x",
        ):
            response = client.post(TEST_URL, json={"sql": sql})
            assert response.status_code == 400, (sql, response.text)
            assert response.json()["code"] == "query_failed", (sql, response.json())
    assert _snapshot(filled) == before


@pytest.mark.postgres_only
def test_postgres_runs_in_a_bounded_read_only_transaction(
    filled: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_query._Checker, "walk", lambda self, tree: None)
    sql = (
        "SELECT current_setting('transaction_read_only') AS ro, "
        "current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt, "
        "current_setting('search_path') AS sp, "
        "current_setting('standard_conforming_strings') AS scs"
    )
    with TestClient(create_app(filled)) as client:
        inside = client.post(TEST_URL, json={"sql": sql, "timeout": 2.5})
        started = time.perf_counter()
        slept = client.post(TEST_URL, json={"sql": "SELECT pg_sleep(20)", "timeout": 0.5})
        elapsed = time.perf_counter() - started
        # SET LOCAL ended with the rollback: the pooled connections are back to normal
        after = client.post(TEST_URL, json={"sql": sql})
    assert inside.json()["rows"] == [["on", "2500ms", "2500ms", "public", "on"]], inside.text
    assert slept.status_code == 408 and slept.json()["code"] == "query_timeout", slept.text
    assert elapsed < 5
    assert after.json()["rows"][0][1:3] == ["5s", "5s"]


@pytest.mark.postgres_only
def test_two_components_in_one_postgres_database_stay_apart(
    tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    settings = make_settings(tmp_path, template_dbs)
    shared = settings.model_copy(update={"generator_database_url": settings.test_database_url})
    with TestClient(create_app(shared)) as client:
        assert client.post(GEN_URL, json={"sql": "SELECT count(*) FROM generator_tasks"}).json()[
            "rows"
        ] == [[0]]
        for url, sql in (
            (TEST_URL, "SELECT * FROM generator_tasks"),
            (TEST_URL, "SELECT * FROM public.generator_tasks"),
            (GEN_URL, "SELECT * FROM test_runs"),
            (GEN_URL, "SELECT * FROM alembic_version_test_suite"),
        ):
            response = client.post(url, json={"sql": sql})
            assert response.status_code == 400, (url, sql, response.text)
            assert response.json()["code"] == "query_refused"
