"""The registry is the one place: a throwaway third component is migrated, served and healthy."""

from __future__ import annotations

import configparser
import shutil
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient
from sqlalchemy import Column, MetaData, String, Table, insert, inspect, select

import app.components
from app.core.config import Settings
from app.core.context import Component
from app.core.db import Database
from app.core.deps import ReadAccess, WriteAccess, database_of
from app.main import create_app
from tests.support import ROOT, database_settings

REVISION = '''"""Demo: one table."""

import sqlalchemy as sa
from alembic import op

revision = "demo_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "demo_notes",
        sa.Column("note_id", sa.String(), primary_key=True),
        sa.Column("text", sa.String(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("demo_notes")
'''

metadata = MetaData()
notes = Table(
    "demo_notes",
    metadata,
    Column("note_id", String, primary_key=True),
    Column("text", String, nullable=False),
)
DemoDb = Annotated[Database, Depends(database_of("demo"))]
router = APIRouter(prefix="/api/demo", tags=["demo"], dependencies=[ReadAccess])


@router.post("/notes/{note_id}", status_code=201, dependencies=[WriteAccess])
def add_note(note_id: str, text: str, db: DemoDb) -> dict[str, str]:
    """Record a note."""
    with db.writing() as session:
        session.execute(insert(notes).values(note_id=note_id, text=text))
    return {"note_id": note_id, "text": text}


@router.get("/notes")
def list_notes(db: DemoDb) -> list[dict[str, str]]:
    """List the notes."""
    with db.reading() as session:
        return [dict(row._mapping) for row in session.execute(select(notes))]


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Component:
    """Plug a throwaway component into COMPONENTS: one table, one migrations folder in tmp."""
    versions = tmp_path / "demo_versions"
    versions.mkdir()
    (versions / "demo_0001_initial.py").write_text(REVISION)
    component = Component(
        name="demo",
        title="Demo",
        metadata=metadata,
        settings_key="demo",
        migrations=versions,
        default_db="demo.duckdb",
        routers=(router,),
    )
    monkeypatch.setattr(app.components, "COMPONENTS", (*app.components.COMPONENTS, component))
    return component


def test_a_plugged_in_component_is_migrated_served_and_in_health(
    demo: Component, tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    for name, template in template_dbs.items():
        shutil.copy(template, folder / Path(Settings().database_url(name)).name)
    settings = Settings(
        **database_settings(folder),  # type: ignore[arg-type]
        export_dir=folder / "exports",
        output_dir=folder / "generated",
        backup_before_migrate=False,
        allowed_hosts=["testserver"],
    )
    assert settings.components == ["test_suite", "generator", "demo"]
    assert settings.database_url("demo") == f"duckdb:///{(folder / 'demo.duckdb').resolve()}"
    assert not (folder / "demo.duckdb").exists()
    with TestClient(create_app(settings)) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok"
        assert health["components"]["demo"]["revision"] == "demo_0001"
        assert health["components"]["demo"]["at_head"] is True
        assert client.post("/api/demo/notes/n1", params={"text": "hi"}).status_code == 201
        assert client.get("/api/demo/notes").json() == [{"note_id": "n1", "text": "hi"}]
        assert client.get("/api/demo/notes?text=hi").status_code == 422
        assert "/api/demo/notes" in client.get("/openapi.json").json()["paths"]
        db = client.app.state.ctx.database("demo")  # type: ignore[attr-defined]
        with db.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
        assert {"demo_notes", "alembic_version_demo"} <= tables


def test_a_component_can_be_left_out_by_name(
    demo: Component, tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    settings = Settings(
        **database_settings(tmp_path),  # type: ignore[arg-type]
        components=["demo"],
        backup_before_migrate=False,
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings)) as client:
        assert list(client.get("/health").json()["components"]) == ["demo"]
        assert client.get("/api/test/db/runs").status_code == 404
    assert not (tmp_path / "test_runs.duckdb").exists()


def test_an_unplugged_component_name_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="unknown components \\['demo'\\]; known: test_suite"):
        Settings(components=["demo"])


def test_alembic_ini_sections_mirror_the_registry_for_the_alembic_command_line() -> None:
    ini = configparser.ConfigParser(defaults={"here": str(ROOT)})
    ini.read(ROOT / "alembic.ini")
    for comp in app.components.COMPONENTS:
        section = ini[comp.name]
        assert Path(section["version_locations"]) == comp.migrations
        assert section["version_table"] == f"alembic_version_{comp.name}"
