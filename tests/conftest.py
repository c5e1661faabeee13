"""Shared fixtures: a migrated template database per component, copied for every test.

`--backend postgres` (or APP_TEST_BACKEND=postgres) runs the same tests on PostgreSQL: the
server in APP_TEST_PG_URL, or a throwaway cluster (tests/pg_cluster.py) started for the session.
Tests marked `duckdb_only` are deselected there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import components
from app.core.config import Settings
from app.core.db import DatabaseRegistry
from app.core.migrate import upgrade
from app.main import create_app
from tests.pg_cluster import Cluster
from tests.support import (
    BACKENDS,
    PgState,
    Server,
    deselect_marked,
    make_settings,
    pg_create,
    pg_drop,
)

DUCKDB_ONLY = "duckdb_only"
POSTGRES_ONLY = "postgres_only"
_CLUSTER: list[Cluster] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --backend: which database the tests run on."""
    parser.addoption(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("APP_TEST_BACKEND", "duckdb"),
        help="database backend of the tests (default: APP_TEST_BACKEND or duckdb)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """On PostgreSQL: use APP_TEST_PG_URL, or start a throwaway cluster for the session."""
    if config.getoption("backend") != "postgres":
        return
    url = os.environ.get("APP_TEST_PG_URL")
    if not url:
        cluster = Cluster().start()
        _CLUSTER.append(cluster)
        url = cluster.url
    PgState.admin_url = url


def pytest_unconfigure(config: pytest.Config) -> None:
    """Drop what the session left on APP_TEST_PG_URL; stop the session's cluster."""
    if PgState.admin_url is not None and not _CLUSTER:
        for name in sorted(PgState.created | PgState.templates):
            pg_drop(name)
    while _CLUSTER:
        _CLUSTER.pop().stop()


def pytest_report_header(config: pytest.Config) -> str:
    """Name the backend in pytest's header."""
    return f"backend: {config.getoption('backend')}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the DuckDB-only tests on PostgreSQL, and the PostgreSQL-only ones on DuckDB."""
    other = DUCKDB_ONLY if config.getoption("backend") == "postgres" else POSTGRES_ONLY
    deselect_marked(config, items, other)


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """On PostgreSQL, drop the databases a test created once it is over.

    Databases of module-scoped fixtures exist before this runs, so they stay until the session
    ends (`pytest_unconfigure`).
    """
    before = set(PgState.created)
    yield
    for name in sorted(PgState.created - before):
        pg_drop(name)


@pytest.fixture(scope="session")
def template_dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Migrate one empty database per registered component once per session.

    DuckDB: a file each. PostgreSQL: a template database each (the value is its name).
    """
    if PgState.admin_url is not None:
        return _pg_templates()
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


def _pg_templates() -> dict[str, Path]:
    registry = DatabaseRegistry()
    names: dict[str, Path] = {}
    for comp in components.COMPONENTS:
        name = f"tmpl_{os.getpid()}_{comp.name}"
        url = pg_create(name, replace=True)
        PgState.created.discard(name)  # kept for the session
        PgState.templates.add(name)
        upgrade(comp.name, registry.get(url), backup=False)
        names[comp.name] = Path(name)
    registry.dispose()
    return names
