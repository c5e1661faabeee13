"""`python -m app copy --from URL --to URL`: move a history between databases, resumably.

Each component whose version table is in the source (both, when they share a database) is
copied table by table, owners first, in primary-key order, in batches: each batch is one
transaction in the target, so a copy killed at any point leaves whole batches, and the next
run continues after the last one. Ids are kept (artifact ids, batch links stay valid) and the
target's id sequences are moved past them. The source is opened read-only and never changed.
The target is migrated to head first and must not hold rows the copy did not write.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Table, create_engine, func, inspect, select
from sqlalchemy.engine import make_url

from app.core.bulk import advance_sequence, insert_rows
from app.core.context import Component
from app.core.db import Database, DatabaseRegistry, is_duckdb
from app.core.migrate import revision_state, upgrade, version_table

BATCH_ROWS = 50_000  # rows per transaction in the target (one Arrow insert or one COPY)
MAX_BATCH_ROWS = 1_000_000


class CopyError(Exception):
    """A copy that cannot start or continue; the message says why and what to do."""


@dataclass
class TableCopy:
    """One table's figures: rows in the source, rows already in the target, rows copied now."""

    component: str
    table: str
    source_rows: int
    resumed_at: int
    copied: int = 0


Progress = Callable[[TableCopy], None]


def open_source(url: str) -> Database:
    """Open the source database; a DuckDB file read-only (it must exist)."""
    connect_args: dict[str, Any] = {}
    if is_duckdb(url):
        database = make_url(url).database
        if not database or database == ":memory:":
            raise CopyError(f"the source {url} names no DuckDB file")
        if not Path(database).is_file():
            raise CopyError(f"the source DuckDB file {database} does not exist")
        connect_args["read_only"] = True
    return Database(url, create_engine(url, connect_args=connect_args), threading.RLock())


def components_in(db: Database, components: Sequence[Component]) -> list[Component]:
    """Return the components whose version table the database has, in registry order."""
    names = set(inspect(db.engine).get_table_names())
    return [c for c in components if version_table(c.name) in names]


def _tables(component: Component) -> list[Table]:
    # Owners before their child rows (no foreign keys on DuckDB: the order is by name).
    return list(component.metadata.sorted_tables)


def _key(table: Table) -> Any:
    keys = list(table.primary_key.columns)
    if len(keys) != 1:
        raise CopyError(f"{table.name}: the copy needs a one-column primary key")
    return keys[0]


def _resume_point(source: Database, target: Database, table: Table) -> tuple[int, Any]:
    """Return how many rows the target holds and the source key to continue after.

    The target must hold exactly the first rows of the source in key order (what an earlier
    copy wrote); anything else is refused rather than mixed.
    """
    key = _key(table)
    with target.reading() as t:
        done = int(t.scalar(select(func.count()).select_from(table)) or 0)
    if done == 0:
        return 0, None
    with source.reading() as s:
        last = s.scalar(select(key).order_by(key).offset(done - 1).limit(1))
    with target.reading() as t:
        present = last is not None and t.scalar(select(func.count()).where(key == last))
    if not present:
        raise CopyError(
            f"the target's {table.name} holds {done:,} rows that are not the first rows of the "
            "source: copy into an empty database (or the one an interrupted copy of this "
            "source left)"
        )
    return done, last


def copy_table(
    source: Database,
    target: Database,
    component: str,
    table: Table,
    batch_rows: int,
    progress: Progress,
) -> TableCopy:
    """Copy one table's rows the target lacks, batch by batch; return its figures."""
    key = _key(table)
    with source.reading() as s:
        total = int(s.scalar(select(func.count()).select_from(table)) or 0)
    done, last = _resume_point(source, target, table)
    figures = TableCopy(component, table.name, total, done)
    progress(figures)
    while done + figures.copied < total:
        query = select(table).order_by(key).limit(batch_rows)
        if last is not None:
            query = query.where(key > last)
        with source.reading() as s:
            rows = [dict(r._mapping) for r in s.execute(query)]
        if not rows:
            break
        with target.writing() as t:
            insert_rows(t, table, rows)
        last = rows[-1][key.name]
        figures.copied += len(rows)
        progress(figures)
    sequence = getattr(key, "default", None)
    if sequence is not None and getattr(sequence, "name", None) and total:
        with target.writing() as t:
            highest = t.scalar(select(func.max(key)))
            if highest is not None:
                advance_sequence(t, sequence.name, int(highest))
    return figures


def copy_database(
    source_url: str,
    target_url: str,
    components: Sequence[Component],
    *,
    only: Sequence[str] = (),
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
) -> list[TableCopy]:
    """Copy every component the source holds (or those in `only`) into the target."""
    if not 1 <= batch_rows <= MAX_BATCH_ROWS:
        raise CopyError(f"--batch takes 1 to {MAX_BATCH_ROWS:,} rows")
    if make_url(source_url) == make_url(target_url):
        raise CopyError("the source and the target are the same database")
    source = open_source(source_url)
    targets = DatabaseRegistry()  # the engine the app would use (a DuckDB folder is created)
    target = targets.get(target_url)
    try:
        found = components_in(source, components)
        if only:
            unknown = sorted(set(only) - {c.name for c in components})
            if unknown:
                raise CopyError(f"unknown component(s) {', '.join(unknown)}")
            found = [c for c in found if c.name in only]
        if not found:
            raise CopyError(
                "the source holds no component's tables (no alembic_version_<component> table)"
            )
        for comp in found:
            state = revision_state(comp.name, source)
            if not state.at_head:
                raise CopyError(
                    f"the source's {comp.name} schema is at {state.current}, not {state.head}: "
                    "migrate it first (python -m app migrate with that database)"
                )
            upgrade(comp.name, target, backup=False)
        done: list[TableCopy] = []
        for comp in found:
            for table in _tables(comp):
                done.append(
                    copy_table(source, target, comp.name, table, batch_rows, progress or _quiet)
                )
        return done
    finally:
        source.engine.dispose()
        targets.dispose()


def _quiet(_: TableCopy) -> None:
    return None


class ProgressBar:
    """A one-line progress bar per table on a terminal; one line per batch otherwise."""

    WIDTH = 30

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.began: dict[str, float] = {}
        self.tty = self.stream.isatty()

    def __call__(self, f: TableCopy) -> None:
        """Draw one table's state."""
        name = f"{f.component}.{f.table}"
        began = self.began.setdefault(name, time.perf_counter())
        have = f.resumed_at + f.copied
        share = have / f.source_rows if f.source_rows else 1.0
        filled = int(share * self.WIDTH)
        rate = f.copied / max(time.perf_counter() - began, 1e-9)
        resumed = f", resumed at {f.resumed_at:,}" if f.resumed_at else ""
        line = (
            f"{name:<36} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {share:6.1%} "
            f"{have:,}/{f.source_rows:,} rows, {rate:,.0f} rows/s{resumed}"
        )
        end = "\n" if have >= f.source_rows or not self.tty else ""
        self.stream.write(("\r" if self.tty else "") + line + end)
        self.stream.flush()
