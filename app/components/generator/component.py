"""The Generator component: its registry entry (tables, settings, migrations, routers, runtime)."""

from __future__ import annotations

from pathlib import Path

from app.components.generator import (
    exec_router,
    query_router,
    reports_router,
    router,
)
from app.components.generator.maintenance import router as maintenance_router
from app.components.generator.models import Base
from app.components.generator.runner import GenerationRunner
from app.core.context import AppContext, Component, Runtime
from app.core.live import EventHub

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations" / "versions" / "generator"


def build(ctx: AppContext) -> Runtime:
    """Build the Generator's event hub and runner (started once its database is migrated)."""
    hub = EventHub()
    return Runtime(runner=GenerationRunner(ctx, hub), hub=hub)


component = Component(
    name="generator",
    title="Generator",
    metadata=Base.metadata,
    settings_key="generator",
    migrations=MIGRATIONS,
    default_db="generator_tasks.duckdb",
    routers=(
        router.router,
        reports_router.router,
        query_router.router,
        exec_router.router,
        maintenance_router,  # harda: retention, backup
    ),
    build=build,
)
