"""duckdb-engine's dialect with SQLAlchemy's compiled-statement cache turned on.

duckdb-engine 0.17.0 declares `supports_statement_cache = False` (it never opted in), so
SQLAlchemy compiles every statement on every execution: 10-25 ms for a report's statement.
Its statement compiler is PostgreSQL's, whose caching SQLAlchemy supports; the dialect adds
only type DDL. `app.core.db` registers this class as the `duckdb` dialect.
"""

from __future__ import annotations

from duckdb_engine import Dialect


class CachingDuckDBDialect(Dialect):
    """duckdb-engine's Dialect, with compiled statements cached as on every built-in dialect."""

    supports_statement_cache = True
