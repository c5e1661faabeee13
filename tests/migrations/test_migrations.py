"""Migrations: the migrated schema equals the models, downgrade works, tables stay home."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from app.components.generator.models import Base as GeneratorBase
from app.components.test_suite.models import Base as SuiteBase
from app.core.db import DatabaseRegistry
from app.core.migrate import downgrade, revision_state, upgrade
from tests.support import fresh_url

METADATA = {"test_suite": SuiteBase.metadata, "generator": GeneratorBase.metadata}


def schema(url: str) -> dict[str, list[str]]:
    """Return the DDL the database reports for tables, sequences and indexes (no version tables).

    DuckDB: its `duckdb_tables()` / `duckdb_sequences()` / `duckdb_indexes()` SQL. PostgreSQL:
    columns (type, nullability, default), constraints, indexes and sequences from the catalogs.
    """
    engine = create_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            result = {name: sorted(str(r) for r in conn.execute(text(q))) for name, q in PG.items()}
        else:
            tables = conn.execute(
                text("SELECT sql FROM duckdb_tables() WHERE table_name NOT LIKE 'alembic_version%'")
            )
            result = {
                "tables": sorted(r[0] for r in tables),
                "sequences": sorted(
                    r[0] for r in conn.execute(text("SELECT sql FROM duckdb_sequences()"))
                ),
                "indexes": sorted(
                    str(r[0]) for r in conn.execute(text("SELECT sql FROM duckdb_indexes()"))
                ),
            }
    engine.dispose()
    return result


_USER = "table_schema = current_schema() AND table_name NOT LIKE 'alembic_version%'"
PG = {
    "tables": "SELECT table_name, column_name, data_type, is_nullable, column_default, "
    f"character_maximum_length FROM information_schema.columns WHERE {_USER}",
    "constraints": "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid) "
    "FROM pg_constraint WHERE connamespace = current_schema()::regnamespace "
    "AND conrelid::regclass::text NOT LIKE 'alembic_version%'",
    "indexes": "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
    "AND tablename NOT LIKE 'alembic_version%'",
    "sequences": "SELECT sequence_name, data_type, start_value, increment "
    "FROM information_schema.sequences WHERE sequence_schema = current_schema()",
}


def table_names(url: str) -> set[str]:
    """Return the user tables of a database."""
    engine = create_engine(url)
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
    engine.dispose()
    return names


@pytest.mark.parametrize("component", ["test_suite", "generator"])
def test_upgrade_on_empty_file_yields_exactly_the_models_schema(
    tmp_path: Path, component: str
) -> None:
    migrated_url, models_url = fresh_url(tmp_path, "migrated"), fresh_url(tmp_path, "models")
    registry = DatabaseRegistry()
    upgrade(component, registry.get(migrated_url), backup=False)
    registry.dispose()
    engine = create_engine(models_url)
    METADATA[component].create_all(engine)
    engine.dispose()
    migrated, modelled = schema(migrated_url), schema(models_url)
    assert migrated["tables"], "the migration created no tables"
    assert migrated == modelled


@pytest.mark.parametrize("component", ["test_suite", "generator"])
def test_downgrade_to_base_then_upgrade_again(tmp_path: Path, component: str) -> None:
    url = fresh_url(tmp_path, "db")
    registry = DatabaseRegistry()
    db = registry.get(url)
    upgrade(component, db, backup=False)
    downgrade(component, db, "base")
    assert revision_state(component, db).current is None
    registry.dispose()
    leftover = table_names(url) - {f"alembic_version_{component}"}
    assert leftover == set()
    upgrade(component, db := DatabaseRegistry().get(url), backup=False)
    assert revision_state(component, db).at_head
    db.engine.dispose()
    assert set(METADATA[component].tables) <= table_names(url)


def test_each_table_lands_in_its_components_database_only(tmp_path: Path) -> None:
    urls = {component: fresh_url(tmp_path, component) for component in METADATA}
    registry = DatabaseRegistry()
    for component in METADATA:
        upgrade(component, registry.get(urls[component]), backup=False)
    registry.dispose()
    for component, metadata in METADATA.items():
        names = table_names(urls[component])
        assert names == set(metadata.tables) | {f"alembic_version_{component}"}


def test_both_components_can_share_one_database(tmp_path: Path) -> None:
    url = fresh_url(tmp_path, "shared")
    registry = DatabaseRegistry()
    db = registry.get(url)
    for component in METADATA:
        upgrade(component, db, backup=False)
        assert revision_state(component, db).at_head
    registry.dispose()
    expected: set[str] = set()
    for component, metadata in METADATA.items():
        expected |= set(metadata.tables) | {f"alembic_version_{component}"}
    assert table_names(url) == expected


@pytest.mark.duckdb_only  # the copy is of a DuckDB file; a PostgreSQL server has its own backups
def test_upgrade_copies_a_non_empty_file_aside_first(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    registry = DatabaseRegistry()
    db = registry.get(f"duckdb:///{path}")
    upgrade("test_suite", db, backup=False, revision="ts_0001")
    downgrade("test_suite", db, "base")
    with db.engine.begin() as conn:  # a user table makes the file non-empty
        conn.execute(text("CREATE TABLE keep_me (x INTEGER)"))
    copy = upgrade("test_suite", db, backup=True)
    registry.dispose()
    assert copy is not None and copy.exists() and copy.name.startswith("db.duckdb.test_suite-base.")
    assert "keep_me" in table_names(f"duckdb:///{copy}")
    assert "test_runs" not in table_names(f"duckdb:///{copy}")


def test_upgrade_at_head_copies_nothing(tmp_path: Path) -> None:
    registry = DatabaseRegistry()
    db = registry.get(fresh_url(tmp_path, "db"))
    upgrade("generator", db, backup=False)
    assert upgrade("generator", db, backup=True) is None
    registry.dispose()
    assert not list(tmp_path.glob("*.bak"))


def test_models_declare_no_foreign_keys() -> None:
    for metadata in METADATA.values():
        assert all(not table.foreign_keys for table in metadata.tables.values())
