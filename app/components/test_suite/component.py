"""The Test Suite component: its registry entry (tables, settings, migrations, routers, runtime)."""

from __future__ import annotations

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
from app.core.context import Component, versions_of, with_hub

component = Component(
    name="test_suite",
    title="Test Suite",
    metadata=Base.metadata,
    settings_key="test",
    migrations=versions_of("test_suite"),
    default_db="test_runs.duckdb",
    routers=(
        router.router,
        reports_router.router,
        query_router.router,
        junit_router.router,
        exec_router.router,
        maintenance_router,  # retention, backup (and what the stale sweep reads)
    ),
    build=with_hub(SuiteRunner),
)
