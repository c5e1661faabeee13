"""Teach Alembic the 'duckdb' dialect (duckdb-engine speaks PostgreSQL's DDL)."""

from __future__ import annotations

from alembic.ddl.postgresql import PostgresqlColumnType, PostgresqlImpl, visit_column_type
from sqlalchemy.ext.compiler import compiles


class AlembicDuckDBImpl(PostgresqlImpl):
    """Alembic's impl for DuckDB: PostgreSQL's, registered under the name 'duckdb'."""

    __dialect__ = "duckdb"


# Without this, op.alter_column(type_=...) cannot render on DuckDB.
compiles(PostgresqlColumnType, "duckdb")(visit_column_type)
