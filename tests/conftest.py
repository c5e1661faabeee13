"""Shared fixtures: a migrated template database per component, copied for every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import components
from app.core.config import Settings
from app.core.db import DatabaseRegistry
from app.core.migrate import upgrade
from app.main import create_app
from tests.support import Server, make_settings


@pytest.fixture(scope="session")
def template_dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Migrate one empty DuckDB file per registered component once per session."""
    folder = tmp_path_factory.mktemp("templates")
    files = {comp.name: folder / comp.default_db for comp in components.COMPONENTS}
    registry = DatabaseRegistry()
    for component, path in files.items():
        upgrade(component, registry.get(f"duckdb:///{path}"), backup=False)
    registry.dispose()
    return files


@pytest.fixture
def settings(tmp_path: Path, template_dbs: dict[str, Path]) -> Settings:
    """Settings on a fresh copy of the migrated databases, in this test's folder."""
    return make_settings(tmp_path, template_dbs)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The real app under TestClient, started (and migrated) on fresh database copies."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A real uvicorn process on empty databases (it migrates them at start-up)."""
    srv = Server(tmp_path).start()
    try:
        yield srv
    finally:
        srv.stop()
