"""Database engines and sessions: one per component database, shared when URLs match."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import registry
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import AppError, Conflict, DatabaseInUseError, StartupError, Unprocessable
from app.core.group_commit import GroupWriter

T = TypeVar("T")
_LOCK_PID = re.compile(r"PID (\d+)")

# `duckdb://` URLs get duckdb-engine's dialect with the compiled-statement cache on.
registry.register("duckdb", "app.core.duckdb_dialect", "CachingDuckDBDialect")


def is_duckdb(url: str) -> bool:
    """Return whether a SQLAlchemy URL points at DuckDB."""
    return make_url(url).get_backend_name() == "duckdb"


def is_postgres(url: str) -> bool:
    """Return whether a SQLAlchemy URL points at PostgreSQL."""
    return make_url(url).get_backend_name() == "postgresql"


def duckdb_file(url: str) -> Path | None:
    """Return the file of a DuckDB URL, or None for in-memory databases and other backends."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "duckdb":
        return None
    database = parsed.database or ""
    if not database or database.startswith(":memory:"):
        return None
    return Path(database)


def _on_connect(memory_limit: str | None) -> Any:
    def configure(dbapi_connection: Any, _record: Any) -> None:
        # Session time zone UTC, so timestamptz values read back as UTC whatever the host's TZ.
        cursor = dbapi_connection.cursor()
        cursor.execute("SET TimeZone='UTC'")
        if memory_limit:
            cursor.execute(f"SET memory_limit='{memory_limit}'")
        cursor.close()

    return configure


def pg_json(value: Any) -> str:
    """Return JSON text whose floats stay floats in PostgreSQL's JSONB (the PostgreSQL serializer).

    JSONB stores numbers as `numeric`, which drops an exponent: 7.136419141247861e+16 reads back
    as 71364191412478610, an integer. Every float written with `e+` is written out in full with
    ".0" instead, so it reads back as the same float (as it does from DuckDB's JSON text).
    """
    encoded = json.dumps(value)
    if "e+" not in encoded:  # no such float (an "e+" in a string only takes the slow path)
        return encoded
    return _json_text(value)


def _json_text(value: Any) -> str:
    if isinstance(value, float) and "e+" in repr(value):
        return format(Decimal(repr(value)), "f") + ".0"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_json_key(k)}: {_json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_json_text(v) for v in value) + "]"
    return json.dumps(value)


def _json_key(key: Any) -> str:
    # json.dumps turns int, float, bool and None keys into strings; so does this.
    return json.dumps(key if isinstance(key, str) else next(iter(json.loads(json.dumps({key: 0})))))


def _in_use_message(url: str, exc: BaseException) -> str | None:
    text_ = str(exc)
    if "Could not set lock" not in text_ and "Conflicting lock" not in text_:
        return None
    pid = _LOCK_PID.search(text_)
    who = f"process {pid.group(1)}" if pid else "another process"
    return (
        f"database {duckdb_file(url) or url} is in use by {who}; run one server per database file"
    )


# PostgreSQL refuses NUL in text and JSONB ("text fields cannot contain NUL (0x00) bytes",
# "unsupported Unicode escape sequence" for \u0000 in JSONB); DuckDB stores it.
_NUL_ERRORS = ("cannot contain NUL", "unsupported Unicode escape sequence")


def _refused_value(exc: BaseException) -> AppError | None:
    """Return the 4xx for a write the database refused (NUL, a concurrent duplicate), else None."""
    if isinstance(exc, DataError) and any(m in str(exc.orig) for m in _NUL_ERRORS):
        return Unprocessable(
            "text values cannot contain the NUL character (\\u0000) on PostgreSQL",
            code="nul_character",
        )
    # Another process inserted the same key between this one's check and its insert
    # (PostgreSQL SQLSTATE 23505; one process serialises its writes with the write lock).
    if isinstance(exc, IntegrityError) and getattr(exc.orig, "sqlstate", None) == "23505":
        return Conflict(
            "the record was written by another request at the same time; it exists now",
            code="conflict",
        )
    return None


def _translated(exc: BaseException) -> BaseException:
    """Return the error a caller of a failed grouped write gets (a refused value as a 4xx)."""
    return _refused_value(exc) or exc


@dataclass
class Database:
    """A component's database: engine, session factory and the process-wide write lock."""

    url: str
    engine: Engine
    write_lock: threading.RLock
    sessions: sessionmaker[Session] = field(init=False)

    group: GroupWriter = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self.group = GroupWriter(self.sessions, self.write_lock, _translated)

    def write(
        self, work: Callable[[Session], T], *, combine: bool = False, key: Hashable | None = None
    ) -> T:
        """Apply `work(session)` in a group commit; return its result once committed.

        One transaction holds every write waiting at that moment (app.core.group_commit):
        `work` may run more than once before its commit and must only touch the session.
        `combine`: its rows of new records may join the group's one insert per table, and
        `key` (the record it writes) is looked up with the group's other keys in one read.
        """
        return self.group.submit(work, combine, key)

    @property
    def is_duckdb(self) -> bool:
        """Return whether this database is DuckDB."""
        return self.engine.dialect.name == "duckdb"

    @property
    def is_postgres(self) -> bool:
        """Return whether this database is PostgreSQL."""
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """Yield a session for reads; rolled back at the end."""
        session = self.sessions()
        try:
            yield session
        except DataError as exc:
            refused = _refused_value(exc)
            if refused is None:
                raise
            raise refused from exc
        finally:
            session.rollback()
            session.close()

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """Yield a session holding the write lock; commit on success, roll back on error."""
        # DuckDB writers are optimistic: two transactions updating one row fail with
        # "Conflict on update". Serialising write transactions measured faster than retrying.
        with self.write_lock, self.group.holding():
            session = self.sessions()
            try:
                yield session
                session.commit()
            except BaseException as exc:
                session.rollback()
                refused = _refused_value(exc)
                if refused is not None:
                    raise refused from exc
                raise
            finally:
                session.close()


class DatabaseRegistry:
    """Engines by URL, so two components pointing at one database share one engine and lock."""

    def __init__(
        self, pool_size: int = 10, max_overflow: int = 20, memory_limit: str | None = None
    ) -> None:
        self._memory_limit = memory_limit
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._by_url: dict[str, Database] = {}
        self._guard = threading.Lock()

    def get(self, url: str) -> Database:
        """Return the database for a URL, creating its engine on first use."""
        key = make_url(url).render_as_string(hide_password=False)
        with self._guard:
            if key not in self._by_url:
                self._by_url[key] = Database(key, self._create_engine(key), threading.RLock())
            return self._by_url[key]

    def _create_engine(self, url: str) -> Engine:
        kwargs: dict[str, Any] = {}
        if is_duckdb(url):
            path = duckdb_file(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            kwargs.update(pool_size=self._pool_size, max_overflow=self._max_overflow)
        elif is_postgres(url):
            # Session time zone UTC (as on DuckDB): timestamptz values read back in UTC.
            kwargs.update(
                pool_size=self._pool_size,
                max_overflow=self._max_overflow,
                pool_pre_ping=True,
                connect_args={"options": "-c timezone=UTC"},
                json_serializer=pg_json,
            )
        engine = create_engine(url, **kwargs)
        if engine.dialect.name == "duckdb":
            event.listen(engine, "connect", _on_connect(self._memory_limit))
        return engine

    def dispose(self) -> None:
        """Stop the group writers, close every pooled connection (releases DuckDB file locks)."""
        with self._guard:
            for db in self._by_url.values():
                db.group.close()
                db.engine.dispose()
            self._by_url.clear()


def check_reachable(db: Database) -> None:
    """Open one connection; turn a DuckDB lock conflict into one clear sentence."""
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        message = _in_use_message(db.url, exc)
        if message:
            raise DatabaseInUseError(message) from None
        raise StartupError(f"database {db.url} cannot be opened: {exc}") from exc
