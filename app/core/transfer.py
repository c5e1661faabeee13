"""Export and import of a component's tables: full records, every table, the schema revision."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    Enum,
    Integer,
    Text,
    cast,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Session

from app.core.bulk import copy_to_file, insert_rows
from app.core.errors import BadRequest, Conflict, Unprocessable
from app.core.records import table_of, upsert

EXPORT_FORMAT = "accelerate-tracking-export"
EXPORT_VERSION = 1
FORMATS = ("json", "jsonl", "csv", "parquet")
_BARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


@dataclass(frozen=True)
class TableSpec:
    """How one table is exported (order) and imported (upsert by key, or replace per owner)."""

    model: type[DeclarativeBase]
    order_by: tuple[str, ...]
    group: str
    keys: tuple[str, ...] = ()
    owner: str | None = None
    # A single-table export's SELECT: the table's columns and the ones users group by (counts,
    # outcome, the run's model...). Only jsonl/csv/parquet use it; the JSON document stays raw.
    flat: Callable[[], Any] | None = None

    @property
    def name(self) -> str:
        """Return the table name."""
        return str(table_of(self.model).name)

    @property
    def columns(self) -> list[Any]:
        """Return the exported columns (every column but the surrogate `id`)."""
        return [c for c in table_of(self.model).columns if c.name != "id"]


def scratch_name(path: Path) -> Path:
    """Return a hidden temporary name beside `path` whose length does not grow with its name."""
    return path.with_name(f".export-{uuid.uuid4().hex}.tmp")


def export_path(folder: Path, filename: str, overwrite: bool) -> Path:
    """Return where an export named by the client goes; only a bare name in the folder."""
    if not _BARE_NAME.match(filename) or filename in {".", ".."} or ".." in filename:
        raise BadRequest(
            f"filename must be a bare file name (letters, digits, '.', '_', '-'), got {filename!r}",
            code="invalid_filename",
        )
    path = folder / filename
    if path.resolve().parent != folder.resolve():
        raise BadRequest(
            f"filename {filename!r} escapes the export folder", code="invalid_filename"
        )
    if path.exists() and not overwrite:
        raise Conflict(
            f"export file {filename} exists; send overwrite: true to replace it", code="file_exists"
        )
    return path


def format_for(filename: str, requested: str | None) -> str:
    """Return the export format: the one requested, else the file name's extension, else json."""
    if requested:
        return requested
    suffix = Path(filename).suffix.lstrip(".").lower()
    return suffix if suffix in FORMATS else "json"


def _table_query(spec: TableSpec) -> Any:
    table = table_of(spec.model)
    return select(*spec.columns).order_by(*[table.c[name] for name in spec.order_by])


def export_table(session: Session, spec: TableSpec, path: Path, fmt: str) -> int:
    """Write one table to a file in the given format; return its row count."""
    columns = [(c.name, c) for c in spec.columns]
    return copy_to_file(session, _table_query(spec), columns, path, fmt)


# Each column's type in the schema side file: a Table Schema type, and the DuckDB type to load it
# with (`read_csv(..., columns=...)`). In CSV, lists and objects are JSON text.
# In order: BigInteger before Integer (it is one).
FIELD_TYPES: tuple[tuple[type[Any], str, str], ...] = (
    (ARRAY, "array", "VARCHAR[]"),
    (JSON, "object", "JSON"),
    (DateTime, "datetime", "TIMESTAMPTZ"),
    (Boolean, "boolean", "BOOLEAN"),
    (BigInteger, "integer", "BIGINT"),
    (Integer, "integer", "INTEGER"),
    (Double, "number", "DOUBLE"),
)


def field_type(kind: Any) -> tuple[str, str]:
    """Return (table-schema type, SQL type) of a SQLAlchemy column type."""
    for base, name, sql in FIELD_TYPES:
        if isinstance(kind, base):
            return name, sql
    return "string", "VARCHAR"


def table_schema(query: Any, fmt: str) -> list[dict[str, Any]]:
    """Describe every column an export of `query` writes: name, type, SQL type, text format."""
    fields = []
    for column in query.selected_columns:
        kind, sql = field_type(column.type)
        field: dict[str, Any] = {"name": column.name, "type": kind, "sql_type": sql}
        if kind == "datetime" and fmt != "parquet":
            field["format"] = "ISO 8601, UTC, ending in Z"
        elif kind in ("array", "object") and fmt == "csv":
            field["format"] = "JSON text"
        fields.append(field)
    return fields


def export_flat(session: Session, spec: TableSpec, path: Path, fmt: str) -> tuple[int, Any]:
    """Write one table with its denormalised columns; return the row count and the query."""
    query = spec.flat() if spec.flat is not None else _table_query(spec)
    written = query
    if fmt == "csv":  # lists and objects as JSON text, so every reader parses them alike
        written = query.with_only_columns(
            *[
                cast(func.to_json(c), Text).label(c.name) if isinstance(c.type, ARRAY | JSON) else c
                for c in query.selected_columns
            ]
        )
    columns = [(c.name, c) for c in written.selected_columns]
    return copy_to_file(session, written, columns, path, fmt), query


def schema_path(path: Path) -> Path:
    """Return the schema side file of an export (its name stays within 255 bytes)."""
    return path.with_name(f"{path.name[:200]}.schema.json")


def write_schema(
    path: Path, component: str, table: str, fmt: str, query: Any, rows: int, revision: str | None
) -> Path:
    """Write the schema side file of a one-table export (atomically) and return its path."""
    side = schema_path(path)
    document = {
        "format": "accelerate-tracking-table",
        "version": EXPORT_VERSION,
        "component": component,
        "table": table,
        "file": path.name,
        "file_format": fmt,
        "rows": rows,
        "schema_revision": revision,
        "exported_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "fields": table_schema(query, fmt),
    }
    tmp = scratch_name(side)
    tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, side)
    return side


def export_document(
    session: Session,
    component: str,
    revision: str | None,
    specs: Sequence[TableSpec],
    path: Path,
) -> dict[str, int]:
    """Write every given table into one JSON document that `import_document` loads back."""
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        parts: list[tuple[str, Path]] = []
        for spec in specs:
            part = Path(scratch) / f"{spec.name}.json"
            counts[spec.name] = export_table(session, spec, part, "json")
            parts.append((spec.name, part))
        header = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "component": component,
            "schema_revision": revision,
            "exported_at": datetime.now(UTC).isoformat(),
            "counts": counts,
        }
        tmp = scratch_name(path)
        with tmp.open("w", encoding="utf-8") as out:
            out.write(json.dumps(header)[:-1] + ', "tables": {')
            for i, (name, part) in enumerate(parts):
                out.write(("" if i == 0 else ", ") + json.dumps(name) + ": ")
                if part.exists() and part.stat().st_size:
                    with part.open("r", encoding="utf-8") as src:
                        shutil.copyfileobj(src, out)
                else:
                    out.write("[]")
            out.write("}}\n")
        os.replace(tmp, path)
    return counts


# --- import ----------------------------------------------------------------------------------


def _coerce(column: Any, value: Any, where: str) -> Any:
    if value is None:
        if not column.nullable:
            raise Unprocessable(f"{where}: {column.name} must not be null", code="invalid_import")
        return None
    kind = column.type
    try:
        if isinstance(kind, Enum):
            if value not in kind.enums:
                raise ValueError(f"expected one of {', '.join(kind.enums)}")
            return value
        if isinstance(kind, postgresql.ARRAY):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("expected a list of strings")
            return value
        if isinstance(kind, DateTime):
            if isinstance(value, datetime):
                parsed = value
            else:
                parsed = datetime.fromisoformat(str(value).replace(" ", "T"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if isinstance(kind, Boolean):
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if isinstance(kind, Integer):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("expected an integer")
            limit = 2**63 if isinstance(kind, BigInteger) else 2**31
            if not -limit <= value < limit:
                raise ValueError("integer out of range")
            return value
        if isinstance(kind, Double):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("expected a number")
            if not math.isfinite(value):
                raise ValueError("expected a finite number")
            return float(value)
        if isinstance(kind, JSON):
            if not isinstance(value, dict):
                raise ValueError("expected an object")
            return value
        if isinstance(value, dict | list):
            raise ValueError("expected a string")
        return str(value) if not isinstance(value, date) else value.isoformat()
    except ValueError as exc:
        raise Unprocessable(f"{where}: {column.name}: {exc}", code="invalid_import") from None


def _default(column: Any, where: str) -> Any:
    if column.default is not None and getattr(column.default, "is_scalar", False):
        return column.default.arg
    if column.server_default is not None and isinstance(column.type, DateTime):
        return datetime.now(UTC)
    if column.nullable:
        return None
    raise Unprocessable(f"{where}: missing column {column.name}", code="invalid_import")


def _rows(spec: TableSpec, raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise Unprocessable(f"tables.{spec.name} must be a list of rows", code="invalid_import")
    columns = {c.name: c for c in spec.columns}
    rows = []
    for i, item in enumerate(raw):
        where = f"tables.{spec.name}[{i}]"
        if not isinstance(item, dict):
            raise Unprocessable(f"{where} must be an object", code="invalid_import")
        unknown = set(item) - set(columns)
        if unknown:
            raise Unprocessable(
                f"{where}: unknown columns {sorted(unknown)}", code="invalid_import"
            )
        # Every row carries every column, so one multi-row statement fits them all.
        rows.append(
            {
                name: _coerce(col, item[name], where) if name in item else _default(col, where)
                for name, col in columns.items()
            }
        )
    return rows


def import_document(
    session: Session, component: str, specs: Sequence[TableSpec], document: dict[str, Any]
) -> dict[str, int]:
    """Load an export document into the session's transaction; idempotent, all or nothing."""
    if document.get("format") != EXPORT_FORMAT:
        raise Unprocessable(
            f"not an export document (format must be {EXPORT_FORMAT!r})", code="invalid_import"
        )
    if document.get("component") != component:
        raise Unprocessable(
            f"this export is of the {document.get('component')!r} component, not {component!r}",
            code="invalid_import",
        )
    tables = document.get("tables")
    if not isinstance(tables, dict):
        raise Unprocessable("tables must be an object of table name → rows", code="invalid_import")
    by_name = {spec.name: spec for spec in specs}
    unknown = set(tables) - set(by_name)
    if unknown:
        raise Unprocessable(f"unknown tables {sorted(unknown)}", code="invalid_import")
    parsed = {name: _rows(by_name[name], rows) for name, rows in tables.items()}
    counts: dict[str, int] = {}
    for spec in specs:
        rows = parsed.get(spec.name)
        if rows is None:
            continue
        if spec.keys:
            counts[spec.name] = upsert(session, spec.model, spec.keys, rows)
        else:
            assert spec.owner is not None
            owners = sorted({row[spec.owner] for row in rows})
            table = table_of(spec.model)
            for start in range(0, len(owners), 1000):
                part = owners[start : start + 1000]
                session.execute(delete(table).where(table.c[spec.owner].in_(part)))
            counts[spec.name] = insert_rows(session, table, rows)
    return counts


def export(
    session: Session,
    component: str,
    folder: Path,
    body: Any,
    chosen: Sequence[TableSpec],
    every: Sequence[TableSpec],
    revision: str | None,
) -> dict[str, Any]:
    """Write an export file (the JSON document, or one table) and say what was written."""
    path = export_path(folder, body.filename, body.overwrite)
    fmt = format_for(body.filename, body.format)
    side: Path | None = None  # the schema side file of a one-table export
    if fmt == "json":
        rows = export_document(session, component, revision, chosen, path)
    else:
        by_name = {spec.name: spec for spec in every}
        name = body.table or every[0].name
        if name not in by_name:
            raise BadRequest(
                f"unknown table {name!r}; one of {', '.join(by_name)}", code="unknown_table"
            )
        tmp = scratch_name(path)
        count, query = export_flat(session, by_name[name], tmp, fmt)
        tmp.replace(path)
        rows = {name: count}
        side = write_schema(path, component, name, fmt, query, count, revision)
    return {
        "path": str(path),
        "filename": path.name,
        "format": fmt,
        "bytes": path.stat().st_size,
        "rows": rows,
        "schema_revision": revision,
        "schema_file": side.name if side else None,
    }


# --- checks a component runs after loading (the import's transaction rolls back on failure) ---


def check_values(
    tables: dict[str, list[dict[str, Any]]], table: str, column: str, allowed: set[str]
) -> None:
    """Refuse rows of `table` whose `column` is not one of `allowed`."""
    for i, row in enumerate(tables.get(table, [])):
        if row.get(column) not in allowed:
            raise Unprocessable(
                f"tables.{table}[{i}]: {column} must be one of {', '.join(sorted(allowed))}",
                code="invalid_import",
            )


def check_devices(tables: dict[str, list[dict[str, Any]]], table: str) -> None:
    """Refuse rows of `table` whose `hardware` list is empty or repeats a device."""
    for i, row in enumerate(tables.get(table, [])):
        devices = row.get("hardware") or []
        if not devices or len(set(devices)) != len(devices):
            raise Unprocessable(
                f"tables.{table}[{i}]: hardware must name distinct devices", code="invalid_import"
            )


def check_references(referenced: set[str], existing: set[str], what: str) -> None:
    """Refuse an import whose rows refer to ids that are neither imported nor stored."""
    missing = sorted(referenced - existing)
    if missing:
        raise Unprocessable(
            f"rows refer to {what} that are neither imported nor stored: {missing[:10]}",
            code="invalid_import",
        )
