"""Migrations: the migrated schema equals the models, downgrade works, tables stay home."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.components.generator.models import Base as GeneratorBase
from app.components.test_suite.models import Base as SuiteBase
from app.core.db import DatabaseRegistry
from app.core.migrate import downgrade, revision_state, upgrade

METADATA = {"test_suite": SuiteBase.metadata, "generator": GeneratorBase.metadata}


def schema(path: Path) -> dict[str, list[str]]:
    """Return the DDL DuckDB reports for tables, sequences and indexes (no version tables)."""
    engine = create_engine(f"duckdb:///{path}")
    with engine.connect() as conn:
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


def table_names(path: Path) -> set[str]:
    """Return the user tables of a DuckDB file."""
    engine = create_engine(f"duckdb:///{path}")
    with engine.connect() as conn:
        names = {r[0] for r in conn.execute(text("SELECT table_name FROM duckdb_tables()"))}
    engine.dispose()
    return names


@pytest.mark.parametrize("component", ["test_suite", "generator"])
def test_upgrade_on_empty_file_yields_exactly_the_models_schema(
    tmp_path: Path, component: str
) -> None:
    registry = DatabaseRegistry()
    upgrade(component, registry.get(f"duckdb:///{tmp_path / 'migrated.duckdb'}"), backup=False)
    registry.dispose()
    engine = create_engine(f"duckdb:///{tmp_path / 'models.duckdb'}")
    METADATA[component].create_all(engine)
    engine.dispose()
    migrated, modelled = schema(tmp_path / "migrated.duckdb"), schema(tmp_path / "models.duckdb")
    assert migrated["tables"], "the migration created no tables"
    assert migrated == modelled


@pytest.mark.parametrize("component", ["test_suite", "generator"])
def test_downgrade_to_base_then_upgrade_again(tmp_path: Path, component: str) -> None:
    registry = DatabaseRegistry()
    db = registry.get(f"duckdb:///{tmp_path / 'db.duckdb'}")
    upgrade(component, db, backup=False)
    downgrade(component, db, "base")
    assert revision_state(component, db).current is None
    registry.dispose()
    leftover = table_names(tmp_path / "db.duckdb") - {f"alembic_version_{component}"}
    assert leftover == set()
    upgrade(
        component, db := DatabaseRegistry().get(f"duckdb:///{tmp_path / 'db.duckdb'}"), backup=False
    )
    assert revision_state(component, db).at_head
    db.engine.dispose()
    assert set(METADATA[component].tables) <= table_names(tmp_path / "db.duckdb")


def test_each_table_lands_in_its_components_database_only(tmp_path: Path) -> None:
    registry = DatabaseRegistry()
    for component in METADATA:
        upgrade(component, registry.get(f"duckdb:///{tmp_path / component}.duckdb"), backup=False)
    registry.dispose()
    for component, metadata in METADATA.items():
        names = table_names(tmp_path / f"{component}.duckdb")
        assert names == set(metadata.tables) | {f"alembic_version_{component}"}


def test_both_components_can_share_one_database(tmp_path: Path) -> None:
    registry = DatabaseRegistry()
    db = registry.get(f"duckdb:///{tmp_path / 'shared.duckdb'}")
    for component in METADATA:
        upgrade(component, db, backup=False)
        assert revision_state(component, db).at_head
    registry.dispose()
    expected: set[str] = set()
    for component, metadata in METADATA.items():
        expected |= set(metadata.tables) | {f"alembic_version_{component}"}
    assert table_names(tmp_path / "shared.duckdb") == expected


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
    assert "keep_me" in table_names(copy)
    assert "test_runs" not in table_names(copy)


def test_upgrade_at_head_copies_nothing(tmp_path: Path) -> None:
    registry = DatabaseRegistry()
    db = registry.get(f"duckdb:///{tmp_path / 'db.duckdb'}")
    upgrade("generator", db, backup=False)
    assert upgrade("generator", db, backup=True) is None
    registry.dispose()
    assert not list(tmp_path.glob("*.bak"))


def test_models_declare_no_foreign_keys() -> None:
    for metadata in METADATA.values():
        assert all(not table.foreign_keys for table in metadata.tables.values())
