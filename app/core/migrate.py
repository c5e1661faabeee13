"""Run Alembic for a component from the app: current revision, head, upgrade with a backup."""

from __future__ import annotations

import functools
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect, text

import app.core.alembic_duckdb  # noqa: F401  (registers the DuckDB impl)
from app.core.config import registered
from app.core.db import Database, duckdb_file
from app.core.errors import StartupError

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]


def alembic_config(component: str) -> Config:
    """Return the Alembic config of a component: its registry entry's folder, its version table.

    A component's alembic.ini section (for the `alembic -n <name>` command line) is optional:
    everything the app needs comes from `Component`.
    """
    comp = next((c for c in registered() if c.name == component), None)
    if comp is None:
        raise KeyError(component)
    cfg = Config(str(ROOT / "alembic.ini"), ini_section=component)
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("version_locations", str(comp.migrations))
    cfg.set_main_option("version_table", version_table(component))
    cfg.set_main_option("component", component)
    cfg.set_main_option("path_separator", "os")
    return cfg


def version_table(component: str) -> str:
    """Return the name of a component's Alembic version table."""
    return f"alembic_version_{component}"


@dataclass(frozen=True)
class RevisionState:
    """Where a component's database stands against its migrations."""

    current: str | None
    head: str | None

    @property
    def at_head(self) -> bool:
        """Return whether the database is at the newest revision."""
        return self.current == self.head


@functools.lru_cache(maxsize=64)
def _head_of(script_location: str, version_locations: str) -> str | None:
    # Loading the revision scripts is most of a /health request (~6 ms of ~13); the scripts a
    # process was started with do not change under it, so each folder's head is read once.
    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    cfg.set_main_option("version_locations", version_locations)
    cfg.set_main_option("path_separator", "os")
    return ScriptDirectory.from_config(cfg).get_current_head()


def head_revision(component: str) -> str | None:
    """Return the newest revision of a component's migrations."""
    cfg = alembic_config(component)
    return _head_of(
        str(cfg.get_main_option("script_location")), str(cfg.get_main_option("version_locations"))
    )


def revision_state(component: str, db: Database) -> RevisionState:
    """Read the current revision of a component's database and its head."""
    head = head_revision(component)
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": version_table(component)})
        current = ctx.get_current_revision()
    return RevisionState(current=current, head=head)


def check_known(component: str, state: RevisionState) -> None:
    """Refuse a database stamped with a revision this code does not have (it is newer)."""
    if state.current is None:
        return
    script = ScriptDirectory.from_config(alembic_config(component))
    if state.current not in {rev.revision for rev in script.walk_revisions()}:
        raise StartupError(
            f"the {component} database is newer than this code ({state.current} > "
            f"{state.head}): run a newer version of the service, or restore a backup"
        )


def schema_difference(db: Database, metadata: MetaData) -> list[str]:
    """Return the tables and columns the models have that the database lacks (cheap reflection)."""
    sql = "SELECT table_name, column_name FROM information_schema.columns"
    if db.is_postgres:  # not the catalogs, nor a same-named table in another schema
        sql += " WHERE table_schema = current_schema()"
    query = text(sql)
    with db.engine.connect() as conn:
        present: dict[str, set[str]] = {}
        for table_name, column_name in conn.execute(query):
            present.setdefault(str(table_name), set()).add(str(column_name))
    missing: list[str] = []
    for table in metadata.sorted_tables:
        if table.name not in present:
            missing.append(f"table {table.name}")
            continue
        missing += [
            f"column {table.name}.{c.name}"
            for c in table.columns
            if c.name not in present[table.name]
        ]
    return missing


def check_schema(component: str, db: Database, metadata: MetaData) -> None:
    """Refuse to serve a database at head whose tables do not match the models."""
    missing = schema_difference(db, metadata)
    if missing:
        raise StartupError(
            f"the {component} database is stamped at head but lacks {', '.join(missing)}; "
            "restore a backup or migrate a fresh file"
        )


def backup_duckdb(db: Database, label: str) -> Path | None:
    """Copy a non-empty DuckDB file aside (after a checkpoint); return the copy's path."""
    path = duckdb_file(db.url)
    if path is None or not path.exists() or path.stat().st_size == 0:
        return None
    with db.engine.connect() as conn:
        if not inspect(conn).get_table_names():
            return None
        conn.exec_driver_sql("CHECKPOINT")
    # Closing every pooled connection releases the file, so the copy is consistent.
    db.engine.dispose()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.{label}.{stamp}.bak")
    shutil.copy2(path, target)
    log.info("copied %s to %s before migrating", path, target)
    return target


def upgrade(
    component: str, db: Database, *, backup: bool = True, revision: str = "head"
) -> Path | None:
    """Bring a component's database to `revision`, first copying a DuckDB file that will change."""
    state = revision_state(component, db)
    check_known(component, state)
    if revision == "head" and state.at_head:
        return None
    copy = backup_duckdb(db, f"{component}-{state.current or 'base'}") if backup else None
    log.info("migrating %s from %s to %s", component, state.current or "base", revision)
    with db.write_lock, db.engine.begin() as conn:
        _serialise(db, conn, component)
        cfg = alembic_config(component)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return copy


def _serialise(db: Database, conn: Connection, component: str) -> None:
    """On PostgreSQL, hold a transaction-level advisory lock: one worker migrates at a time.

    Alembic reads the current revision after the lock is granted, so a worker that waited finds
    the database at head and does nothing.
    """
    if db.is_postgres:
        key = f"accelerate-tracking:migrate:{component}"
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def downgrade(component: str, db: Database, revision: str = "base") -> None:
    """Take a component's database down to `revision`."""
    with db.write_lock, db.engine.begin() as conn:
        _serialise(db, conn, component)
        cfg = alembic_config(component)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
