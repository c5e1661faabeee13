"""The read-only SQL route on PostgreSQL: the same four layers as on DuckDB (app/core/sql_query).

1-2. Parse and walk: the same `check_sql` as on DuckDB, run on DuckDB's parser (an in-memory
   DuckDB; DuckDB's parser is derived from PostgreSQL's, so a text means the same to both where
   it matters: one statement, strings, dollar quotes, nested comments, `E'\\''`). Allowed: the
   component's own tables by bare name or `<schema>.` (the connection's schema); refused: the
   other component's tables (both may share one database), `pg_catalog`, `information_schema`,
   any other schema, every function not in DuckDB's catalog or on the deny list, which names
   PostgreSQL's dangerous families explicitly (`sql_query.PG_DENIED`: files, large objects,
   dblink, SQL in a string, settings, sleep, other sessions, advisory locks, transaction ids,
   sequences, catalog lookups), `reg*` casts, qualified operators and types, and DML in a CTE.
   DuckDB and PostgreSQL lex one text alike only with `standard_conforming_strings` on (with it
   off, `'a\\'` would end later in PostgreSQL than in DuckDB): layer 3 sets it.
3. Run: a pooled connection of the component's engine, `SET TRANSACTION READ ONLY` (PostgreSQL
   itself then refuses INSERT/UPDATE/DELETE/MERGE, DDL, `nextval`, `SELECT ... FOR UPDATE`,
   writable CTEs), `statement_timeout` and `lock_timeout` to the time limit, `search_path` to the
   connection's schema, all `SET LOCAL` (set_config(..., true)), and always rolled back, so the
   pooled connection is left as it was. The query goes as `SELECT * FROM (<sql>) LIMIT $1` over
   the extended protocol (one bind parameter): PostgreSQL refuses a second statement there
   ("cannot insert multiple commands into a prepared statement"), so a `;` the parser missed
   could not end the read-only transaction. An error PostgreSQL raises for the query (a
   DuckDB-only function, a type error) is a 400 `query_failed` with its message; the timeout is
   PostgreSQL's QueryCanceled (or LockNotAvailable): the same 408 as on DuckDB.
4. Bounds: the same limits and slots (sql_query.run_query); the rows become an Arrow table by
   the columns' PostgreSQL types (`_ARROW`): integers, floats, booleans, text, dates, times and
   timestamps as on DuckDB; numeric(p, s) as decimal128(p, s) (a string in JSON, as DuckDB's
   DECIMAL); unconstrained numeric (what PostgreSQL's avg() and sum(bigint) return) as float64;
   json/jsonb, interval and anything without an Arrow type as PostgreSQL's text.

Why not a second parser (pglast/libpg_query): it would add a C dependency for a check DuckDB's
parser already makes, and two checkers could disagree; one allow-list serves both backends.
What this cannot do: stop a superuser's query from reading what it may read, had a function
slipped past layer 2 (read-only transactions do not stop reads). A role with SELECT on the
component's tables only would be a fifth layer; the app does not create roles.
"""

from __future__ import annotations

import time
from decimal import Decimal
from functools import cache
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
from psycopg import postgres
from psycopg.types.string import TextLoader

from app.core import sql_query
from app.core.db import Database
from app.core.sql_query import QueryRefused, QueryResult, QueryTimeout

# Arrow types by PostgreSQL type name; numeric is decided by its declared precision.
_ARROW: dict[str, pa.DataType] = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "oid": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "name": pa.string(),
    "char": pa.string(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="Etc/UTC"),  # sessions run in UTC; DuckDB's name
    "bytea": pa.binary(),
}
# Read as PostgreSQL's text: JSON as written (not parsed into Python), intervals with their
# months (a timedelta has none), and types whose Python values Arrow has no type for.
_AS_TEXT = ("json", "jsonb", "interval", "uuid", "inet", "cidr", "macaddr", "money", "xml")
_TIMEOUTS = {"57014": "ran longer than", "55P03": "waited for a lock longer than"}


@cache
def _parser() -> duckdb.DuckDBPyConnection:
    # An in-memory DuckDB used for its parser only (json_serialize_sql); one cursor per check.
    return duckdb.connect()


def run_postgres(
    db: Database, sql: str, tables: frozenset[str], limit: int, timeout: float
) -> QueryResult:
    """Run one checked, read-only, time-limited SELECT on a pooled PostgreSQL connection."""
    pooled = db.engine.raw_connection()
    try:
        conn: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        conn.rollback()  # a transaction of its own, whatever the pool left
        try:
            with conn.cursor() as cur:
                schema = _begin(cur, timeout)
                query = _check(sql, tables, schema, limit)
                return _execute(cur, query, limit, timeout)
        finally:
            conn.rollback()
    finally:
        pooled.close()


def _check(sql: str, tables: frozenset[str], schema: str, limit: int) -> str:
    parser = _parser().cursor()
    try:
        schemas = frozenset({schema.lower()})
        query = sql_query.check_sql(parser, sql, tables, schemas)
        # The wrapped text is checked again (as on DuckDB); PostgreSQL gets the limit as $1.
        sql_query.check_sql(parser, _wrap(query, str(limit + 1)), tables, schemas)
    finally:
        parser.close()
    return _wrap(query.replace("%", "%%"), "%s")


def _wrap(query: str, limit: str) -> str:
    return f"SELECT * FROM (\n{query}\n) AS curious_query LIMIT {limit}"


def _begin(cur: psycopg.Cursor[Any], timeout: float) -> str:
    """Start the read-only transaction with its time limits; return the connection's schema."""
    cur.execute("SET TRANSACTION READ ONLY")  # psycopg has just sent BEGIN
    ms = str(max(1, round(timeout * 1000)))
    cur.execute(
        "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true),"
        " set_config('standard_conforming_strings', 'on', true), current_schema()",
        [ms, ms],
    )
    row = cur.fetchone()
    schema = row[3] if row is not None else None
    if not schema:
        raise QueryRefused("the connection has no schema to query (check its search_path)")
    cur.execute("SELECT set_config('search_path', quote_ident(%s), true)", [schema])
    for name in _AS_TEXT:
        if (info := postgres.types.get(name)) is not None:
            cur.adapters.register_loader(info.oid, TextLoader)
    return str(schema)


def _execute(cur: psycopg.Cursor[Any], query: str, limit: int, timeout: float) -> QueryResult:
    started = time.perf_counter()
    try:
        cur.execute(query, [limit + 1], prepare=False)
        rows = cur.fetchall()
    except psycopg.Error as exc:
        raise _failure(exc, timeout) from None
    elapsed = (time.perf_counter() - started) * 1000
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in cur.description or ()]
    arrays = [_array(list(v), col) for v, col in zip(columns, cur.description or (), strict=True)]
    names = [col.name for col in cur.description or ()]
    return sql_query.bounded(pa.Table.from_arrays(arrays, names=names), limit, elapsed)


def _failure(exc: psycopg.Error, timeout: float) -> Exception:
    """Return the app error for a failed query: 408 past the time limit, 400 for the query's own."""
    state = exc.sqlstate or ""
    if state in _TIMEOUTS:
        return QueryTimeout(f"the query {_TIMEOUTS[state]} {timeout:g} s and was stopped")
    if isinstance(exc, psycopg.OperationalError) and (not state or state.startswith(("08", "57P"))):
        return exc  # the server or the connection went away: not the query's fault
    message = exc.diag.message_primary if state else None
    return QueryRefused(f"the query failed: {message or exc}", code="query_failed")


def _array(values: list[Any], column: psycopg.Column) -> pa.Array:
    """Return one result column as an Arrow array typed by its PostgreSQL type."""
    info = postgres.types.get(column.type_code)
    name = info.name if info is not None and info.oid == column.type_code else ""
    if name == "numeric":
        if column.precision is not None and column.precision <= 38:
            kind: pa.DataType | None = pa.decimal128(column.precision, column.scale or 0)
        else:
            kind = pa.float64()
            values = [None if v is None else float(v) for v in values]
    elif name in _AS_TEXT:
        kind = pa.string()
    else:
        kind = _ARROW.get(name)
    try:
        return pa.array(values, type=kind if kind is not None or values else pa.string())
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        # e.g. a uuid[] or a composite value: its Python value as text
        return pa.array([None if v is None else _text(v) for v in values], type=pa.string())


def _text(value: Any) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)
