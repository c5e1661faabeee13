"""The Test Suite component: its registry entry (tables, settings, migrations, routers, runtime)."""

from __future__ import annotations

from pathlib import Path

from app.components.test_suite import (
    exec_router,
    junit_router,
    query_router,
    reports_router,
    router,
)
from app.components.test_suite.maintenance import router as maintenance_router
from app.components.test_suite.models import Base
from app.components.test_suite.runner import SuiteRunner
from app.core.context import AppContext, Component, Runtime
from app.core.live import EventHub

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations" / "versions" / "test_suite"


def build(ctx: AppContext) -> Runtime:
    """Build the Test Suite's event hub and runner (started once its database is migrated)."""
    hub = EventHub()
    return Runtime(runner=SuiteRunner(ctx, hub), hub=hub)


component = Component(
    name="test_suite",
    title="Test Suite",
    metadata=Base.metadata,
    settings_key="test",
    migrations=MIGRATIONS,
    default_db="test_runs.duckdb",
    routers=(
        router.router,
        reports_router.router,
        query_router.router,
        junit_router.router,
        exec_router.router,
        maintenance_router,  # harda: retention, backup
    ),
    build=build,
)
