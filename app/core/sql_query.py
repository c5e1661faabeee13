"""Read-only SQL over one component's tables ("SQL for the curious"), guarded and bounded.

The guard has four layers; each would stop most escapes alone, together they leave none we know:

1. Parse (DuckDB's own parser, `extract_statements`): exactly one statement, of type SELECT
   (covers `WITH`). ATTACH, COPY, INSTALL/LOAD, PRAGMA, SET, EXPLAIN, DDL and DML never run.
2. Walk the parsed tree (`json_serialize_sql`): every table reference must be one of the
   component's own tables (bare name or `main.`), or a CTE in scope; table functions are an
   allow-list (`range`, `generate_series`, `unnest`, `json_each`, `json_tree`), so
   `read_csv('/etc/passwd')`, `glob`, `read_parquet`, `query(...)`, `duckdb_settings()` and
   replacement scans (`FROM '/etc/passwd'`) are refused; every function must already exist in
   the catalog (so nothing autoloads an extension from the network) and not be on a deny-list
   (`nextval`, `setval`, `current_setting`, `getvariable`, `pg_*`, `sleep_ms`, ...; PostgreSQL's
   dangerous families by name, `PG_DENIED`); no time travel (`AT (...)`), no DESCRIBE/SUMMARIZE
   of other tables, no INSERT/UPDATE/DELETE inside a `WITH` (DuckDB parses that as a SELECT),
   no `reg*` casts, qualified types or qualified operators (`OPERATOR(schema.op)`).
3. Run on a dedicated DuckDB connection (`cursor()` on a pooled one: same database instance,
   its own transaction and interrupt) inside `BEGIN TRANSACTION READ ONLY`, then roll back:
   DuckDB itself refuses any write, sequence bumps included, should layers 1-2 miss one.
4. Bounds: SQL text length, result size (64 MiB in Arrow), a row limit pushed into the query
   (`LIMIT n + 1`, so DuckDB stops early and we can say `truncated`), a wall-clock limit (a
   timer calls `interrupt()`), and at most `MAX_CONCURRENT` queries at once per process (429).

Why not the options that look simpler: `duckdb.connect(path, read_only=True)` cannot coexist in
one process with the writer's instance of the same file (DuckDB refuses a second configuration
of an open database); `SET enable_external_access=false` and `lock_configuration` are global to
the instance, and once external access is off it cannot be turned back on while the database
runs, which would break the app's own parquet export and import.

Layout: the limits, errors and answers serve both backends; layers 1-2 (`check_sql`, below
`# --- The check`) too: they only need DuckDB's parser. Layers 3-4 on DuckDB are below
`# --- DuckDB`; on PostgreSQL they are in app/core/sql_query_pg.py (its docstring says how the
same guard holds there). Other backends are refused with a clear error (400 query_unsupported).
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fastapi import Response
from pydantic import Field

from app.core.db import Database
from app.core.errors import AppError, BadRequest
from app.core.schemas import Strict

MAX_SQL_CHARS = 20_000
DEFAULT_ROWS = 1_000
MAX_ROWS = 100_000
DEFAULT_SECONDS = 5.0
MAX_SECONDS = 30.0
MAX_CONCURRENT = 2
MAX_RESULT_BYTES = 64 * 1024 * 1024
FORMATS = ("json", "csv", "parquet")

_slots = threading.BoundedSemaphore(MAX_CONCURRENT)


class QueryRefused(BadRequest):
    """The SQL is not one read-only SELECT over the component's tables (400)."""

    code = "query_refused"


class QueryTimeout(AppError):
    """The query ran past its time limit and was interrupted (408)."""

    status_code = 408
    code = "query_timeout"


class QueryBusy(AppError):
    """Too many queries are running at once (429)."""

    status_code = 429
    code = "query_busy"


class QueryIn(Strict):
    """POST .../db/query: one read-only SELECT or WITH query and its bounds."""

    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS)
    limit: int = Field(DEFAULT_ROWS, ge=1, le=MAX_ROWS, description="rows at most")
    timeout: float = Field(
        DEFAULT_SECONDS, gt=0, le=MAX_SECONDS, description="seconds before it is stopped"
    )


@dataclass
class QueryResult:
    """A finished query: its columns and rows as an Arrow table, and whether it was cut."""

    table: pa.Table
    truncated: bool
    elapsed_ms: float


def run_query(
    db: Database,
    sql: str,
    tables: frozenset[str],
    *,
    limit: int = DEFAULT_ROWS,
    timeout: float = DEFAULT_SECONDS,
) -> QueryResult:
    """Run one guarded read-only SELECT over `tables`; refuse anything else."""
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefused(f"sql is longer than {MAX_SQL_CHARS} characters")
    if not 1 <= limit <= MAX_ROWS:
        raise BadRequest(f"limit must be between 1 and {MAX_ROWS}", code="query_refused")
    if not 0 < timeout <= MAX_SECONDS:
        raise BadRequest(f"timeout must be in (0, {MAX_SECONDS}] seconds", code="query_refused")
    if not (db.is_duckdb or db.is_postgres):
        raise BadRequest(
            f"SQL queries are available on DuckDB and PostgreSQL, not {db.engine.dialect.name}",
            code="query_unsupported",
        )
    if not _slots.acquire(blocking=False):
        raise QueryBusy(f"{MAX_CONCURRENT} queries are already running; retry shortly")
    try:
        if db.is_postgres:
            from app.core.sql_query_pg import run_postgres

            return run_postgres(db, sql, tables, limit, timeout)
        return _run_duckdb(db, sql, tables, limit, timeout)
    finally:
        _slots.release()


def bounded(table: pa.Table, limit: int, elapsed_ms: float) -> QueryResult:
    """Return a fetched table (up to `limit` + 1 rows) as a result; refuse one over the size cap."""
    if table.nbytes > MAX_RESULT_BYTES:
        raise QueryRefused(
            f"the result holds {table.nbytes / 1e6:.0f} MB, over the "
            f"{MAX_RESULT_BYTES // (1024 * 1024)} MiB limit: select fewer rows or columns",
            code="query_too_large",
        )
    truncated = table.num_rows > limit
    return QueryResult(table.slice(0, limit) if truncated else table, truncated, elapsed_ms)


def to_json(result: QueryResult) -> dict[str, Any]:
    """Return a result as {columns, rows, row_count, truncated, elapsed_ms}."""
    columns = [{"name": field.name, "type": str(field.type)} for field in result.table.schema]
    values = [col.to_pylist() for col in result.table.columns]
    rows = [list(row) for row in zip(*values, strict=True)] if values else []
    return {
        "columns": columns,
        "rows": rows,
        "row_count": len(rows),
        "truncated": result.truncated,
        "elapsed_ms": round(result.elapsed_ms, 3),
    }


def to_csv(result: QueryResult) -> bytes:
    """Return a result as CSV with a header line."""
    sink = io.BytesIO()
    try:
        pacsv.write_csv(result.table, sink)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise BadRequest(
            f"the result cannot be written as CSV ({exc}); use format=json or parquet",
            code="query_format",
        ) from None
    return sink.getvalue()


def to_parquet(result: QueryResult) -> bytes:
    """Return a result as a Parquet file."""
    sink = io.BytesIO()
    pq.write_table(result.table, sink)
    return sink.getvalue()


# --- The check (layers 1-2), shared by both backends: DuckDB's parser ---------------------------

_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree"})
_DENIED_FUNCTIONS = frozenset(
    {
        "nextval",
        "currval",
        "setval",
        "current_setting",
        "getvariable",
        "current_query",
        "json_deserialize_sql",
        "json_execute_serialized_sql",
        "json_serialize_sql",
        "write_log",
        "parse_duckdb_log_message",
        "sleep_ms",
        "col_description",
        "obj_description",
        "shobj_description",
        "format_pg_type",
        "format_type",  # built-in macros that read catalog table functions
        "get_block_size",
        "in_search_path",
        "current_schemas",
        # One call builds a value of any size, in memory DuckDB's limit does not cover and
        # in one step the time limit cannot interrupt: repeat('x', 2e9) took 94 s and 3.8 GB.
        "repeat",
        "lpad",
        "rpad",
        "printf",
        "format",
        "bar",
        "list_resize",
        "array_resize",
        "range",  # the list-valued scalars; the table functions of these names stream
        "generate_series",
    }
)
# PostgreSQL's dangerous functions, by family, refused on both backends by name even where
# DuckDB's catalog (layer 2's allow-list) would refuse them already: a later DuckDB that adds a
# compatible name must not open them on PostgreSQL. Each family has a test.
PG_DENIED = {
    "files": ("pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir"),
    "large objects": (
        "lo_import",
        "lo_export",
        "lo_open",
        "lo_creat",
        "lo_create",
        "lo_unlink",
        "lo_get",
        "lo_put",
        "lo_from_bytea",
        "loread",
        "lowrite",
    ),
    "other databases": ("dblink", "dblink_exec", "dblink_connect", "dblink_send_query"),
    "sql in a string": (
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "table_to_xml",
        "schema_to_xml",
        "database_to_xml",
        "ts_stat",
        "ts_rewrite",
    ),
    "settings": ("set_config", "current_setting"),
    "sleep": ("pg_sleep", "pg_sleep_for", "pg_sleep_until"),
    "other sessions": (
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_notify",
    ),
    "advisory locks": ("pg_advisory_lock", "pg_advisory_xact_lock", "pg_try_advisory_lock"),
    "transaction ids": ("txid_current", "txid_current_snapshot", "pg_current_xact_id"),
    "sequences": ("nextval", "setval", "currval", "lastval"),
    "catalog lookups": ("to_regclass", "to_regproc", "to_regtype", "to_regnamespace"),
}
_PG_DENIED_PREFIXES = (
    "lo_",
    "dblink",
    "txid_",
    "query_to_xml",
    "cursor_to_xml",
    "table_to_xml",
    "schema_to_xml",
    "database_to_xml",
    "to_reg",
    "binary_upgrade_",
)
_DENIED = _DENIED_FUNCTIONS | {name for names in PG_DENIED.values() for name in names}
# Handled by DuckDB's binder, so absent from duckdb_functions().
_BINDER_FUNCTIONS = frozenset({"unnest", "unlist"})
_DENIED_PREFIXES = ("pg_", "has_", "duckdb_", "pragma_", *_PG_DENIED_PREFIXES)
# The query nodes a SELECT may hold; DuckDB parses `WITH x AS (DELETE ... RETURNING *) SELECT`
# as a SELECT whose CTE is a DELETE_QUERY_NODE (INSERT_, UPDATE_, ...): refused by type.
_QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
_TABLE_REFS = frozenset(
    {"BASE_TABLE", "JOIN", "SUBQUERY", "TABLE_FUNCTION", "EXPRESSION_LIST", "EMPTY"}
)


@cache
def _catalog_functions() -> frozenset[str]:
    # Built-in scalar/aggregate/window functions and macros of this DuckDB build (the same in
    # every database it opens: extensions are never loaded by the app).
    with duckdb.connect() as conn:
        rows = conn.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() "
            "WHERE function_type IN ('scalar', 'aggregate', 'window', 'macro')"
        ).fetchall()
    return frozenset(name.lower() for (name,) in rows)


def _where(sql: str, node: dict[str, Any]) -> str:
    location = node.get("query_location")
    if not isinstance(location, int) or location >= len(sql):
        return ""
    line = sql.count("\n", 0, location) + 1
    column = location - (sql.rfind("\n", 0, location) + 1) + 1
    return f" (line {line}, column {column})"


class _Checker:
    """Walks a serialized SELECT and refuses what the module docstring lists."""

    def __init__(self, sql: str, tables: frozenset[str], schemas: frozenset[str]) -> None:
        self.sql = sql
        self.tables = tables
        self.schemas = schemas | {""}
        self.functions = _catalog_functions()
        self.table_fns: set[int] = set()  # function nodes of allowed table functions

    def refuse(self, message: str, node: dict[str, Any]) -> QueryRefused:
        return QueryRefused(message + _where(self.sql, node))

    def walk(self, tree: Any) -> None:
        # Iterative: a deeply nested query must not exhaust Python's recursion limit.
        stack: list[tuple[Any, frozenset[str]]] = [(tree, frozenset())]
        while stack:
            value, scope = stack.pop()
            if isinstance(value, list):
                stack.extend((item, scope) for item in value)
                continue
            if not isinstance(value, dict):
                continue
            ctes = value.get("cte_map")
            if isinstance(ctes, dict):
                # A CTE body sees the CTEs before it and itself (recursive); the query, all.
                for entry in ctes.get("map", []):
                    scope = scope | {str(entry["key"]).lower()}
                    stack.append((entry["value"], scope))
            if "sample" in value and "type" in value and "alias" in value:
                self.table_ref(value, scope)
            self.node(value)
            stack.extend((item, scope) for key, item in value.items() if key != "cte_map")

    def node(self, value: dict[str, Any]) -> None:
        kind = value.get("type")
        if isinstance(kind, str) and kind.endswith("_NODE") and kind not in _QUERY_NODES:
            raise self.refuse(
                f"{kind.removesuffix('_QUERY_NODE')} inside a query is not allowed", value
            )
        if value.get("class") in ("FUNCTION", "WINDOW") and id(value) not in self.table_fns:
            self.function(value)
        if value.get("class") == "TYPE":
            name = str(value.get("type_name", "")).lower()
            if value.get("catalog") or value.get("schema") or name.startswith("reg"):
                # reg* casts look names up in PostgreSQL's catalog ('pg_authid'::regclass)
                raise self.refuse(f"casts to {name!r} are not allowed", value)

    def table_ref(self, ref: dict[str, Any], scope: frozenset[str]) -> None:
        kind = ref["type"]
        if kind not in _TABLE_REFS:
            raise self.refuse(f"{kind} is not allowed; query the tables directly", ref)
        if kind == "BASE_TABLE":
            name = str(ref.get("table_name", "")).lower()
            catalog = ref.get("catalog_name") or ""
            schema = (ref.get("schema_name") or "").lower()
            if ref.get("at_clause") is not None:
                raise self.refuse("AT (...) time travel is not allowed", ref)
            if catalog or schema not in self.schemas:
                raise self.refuse(
                    f"only this component's tables can be queried, by bare name "
                    f"(got {'.'.join(p for p in (catalog, schema, name) if p)})",
                    ref,
                )
            if name in scope and not schema:
                return
            if name not in self.tables:
                raise self.refuse(
                    f"unknown table {ref.get('table_name')!r}; tables: "
                    + ", ".join(sorted(self.tables)),
                    ref,
                )
        elif kind == "TABLE_FUNCTION":
            function = ref.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in _TABLE_FUNCTIONS or function.get("catalog") or function.get("schema"):
                raise self.refuse(
                    f"table function {name!r} is not allowed (allowed: "
                    + ", ".join(sorted(_TABLE_FUNCTIONS))
                    + ")",
                    ref,
                )
            self.table_fns.add(id(function))

    def function(self, node: dict[str, Any]) -> None:
        name = str(node.get("function_name", "")).lower()
        if node.get("catalog") or node.get("schema"):
            raise self.refuse(f"qualified function names are not allowed ({name})", node)
        if node.get("is_operator"):
            if "." in name:  # OPERATOR(schema.op)(a, b): an operator from any schema
                raise self.refuse(f"qualified operators are not allowed ({name})", node)
            return
        if node.get("class") == "WINDOW" and node.get("type") != "WINDOW_AGGREGATE":
            return  # row_number, rank, lag, ...: built into the window operator
        if name in _DENIED or name.startswith(_DENIED_PREFIXES):
            raise self.refuse(f"function {name!r} is not allowed", node)
        if name not in self.functions and name not in _BINDER_FUNCTIONS:
            raise self.refuse(f"unknown function {name!r}", node)


def check_sql(
    conn: Any, sql: str, tables: frozenset[str], schemas: frozenset[str] = frozenset({"main"})
) -> str:
    """Return the one SELECT statement of `sql`, or raise QueryRefused saying why not.

    `conn` is any DuckDB connection (only its parser is used); table names may be bare or
    qualified by one of `schemas` (DuckDB: `main`; PostgreSQL: the connection's schema).
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"the SQL does not parse: {exc}") from None
    if len(statements) != 1:
        raise QueryRefused(f"send exactly one statement (got {len(statements)})")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        kind = str(statement.type).rsplit(".", 1)[-1]
        raise QueryRefused(f"only SELECT / WITH queries are allowed (got {kind})")
    query = statement.query.strip().rstrip(";").strip()
    row = conn.execute("SELECT json_serialize_sql(?::VARCHAR)", [query]).fetchone()
    try:
        tree = json.loads(row[0])
    except RecursionError:
        raise QueryRefused("the query is nested too deeply") from None
    if tree.get("error"):
        raise QueryRefused(f"the SQL cannot be checked: {tree.get('error_message')}")
    _Checker(query, tables, schemas).walk(tree["statements"])
    return query


# --- DuckDB: layers 3-4 ------------------------------------------------------------------------


def _duckdb_of(driver_connection: Any) -> duckdb.DuckDBPyConnection:
    # duckdb_engine wraps the DuckDB connection and its cursor() returns a DB-API shim; the
    # dedicated connection we want is the real connection's cursor() (same database instance).
    real = getattr(driver_connection, "_ConnectionWrapper__c", driver_connection)
    if not isinstance(real, duckdb.DuckDBPyConnection):
        raise BadRequest("the database connection is not DuckDB", code="query_unsupported")
    return real


def _run_duckdb(
    db: Database, sql: str, tables: frozenset[str], limit: int, timeout: float
) -> QueryResult:
    pooled = db.engine.raw_connection()
    try:
        conn = _duckdb_of(pooled.driver_connection).cursor()
        try:
            query = check_sql(conn, sql, tables)
            # The row limit goes into the plan so DuckDB stops early; the wrapped text is
            # checked again, so no quirk of the original text can change its meaning.
            wrapped = f"SELECT * FROM (\n{query}\n) AS curious_query LIMIT {limit + 1}"
            check_sql(conn, wrapped, tables)
            return _execute(conn, wrapped, limit, timeout)
        finally:
            conn.close()
    finally:
        pooled.close()


def _execute(conn: Any, query: str, limit: int, timeout: float) -> QueryResult:
    timer = threading.Timer(timeout, conn.interrupt)
    started = time.perf_counter()
    conn.execute("BEGIN TRANSACTION READ ONLY")
    timer.start()
    try:
        table = conn.sql(query).to_arrow_table()
    except duckdb.InterruptException:
        raise QueryTimeout(f"the query ran longer than {timeout:g} s and was stopped") from None
    except duckdb.Error as exc:
        if time.perf_counter() - started >= timeout:
            raise QueryTimeout(f"the query ran longer than {timeout:g} s and was stopped") from None
        raise QueryRefused(f"the query failed: {exc}", code="query_failed") from None
    finally:
        timer.cancel()
        # A late interrupt may fail the rollback; closing the cursor next ends the transaction.
        with contextlib.suppress(duckdb.Error):
            conn.execute("ROLLBACK")
    return bounded(table, limit, (time.perf_counter() - started) * 1000)


# --- Answers (both backends) ---------------------------------------------------------------------

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


def render(result: QueryResult, fmt: str) -> bytes:
    """Return a result's bytes in `fmt` (json, csv or parquet)."""
    if fmt == "csv":
        return to_csv(result)
    if fmt == "parquet":
        return to_parquet(result)
    import pydantic_core

    # JSON has no NaN, Infinity or bytes: NaN and ±Infinity are sent as null, blobs as
    # (URL-safe) base64, anything else without a JSON form as its text.
    return pydantic_core.to_json(
        to_json(result), fallback=str, bytes_mode="base64", inf_nan_mode="null"
    )


def respond(db: Database, body: QueryIn, tables: frozenset[str], fmt: str) -> Response:
    """Run a component's query route: the result in `fmt`, `X-Truncated` saying if rows were cut."""
    result = run_query(db, body.sql, tables, limit=body.limit, timeout=body.timeout)
    headers = {"X-Truncated": str(result.truncated).lower()}
    return Response(render(result, fmt), media_type=MEDIA_TYPES[fmt], headers=headers)
