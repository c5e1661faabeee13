"""The Generator component: its registry entry (tables, settings, migrations, routers, runtime)."""

from __future__ import annotations

from app.components.generator import exec_router, query_router, reports_router, router
from app.components.generator.maintenance import router as maintenance_router
from app.components.generator.models import Base
from app.components.generator.runner import GenerationRunner
from app.core.context import Component, versions_of, with_hub

component = Component(
    name="generator",
    title="Generator",
    metadata=Base.metadata,
    settings_key="generator",
    migrations=versions_of("generator"),
    default_db="generator_tasks.duckdb",
    routers=(
        router.router,
        reports_router.router,
        query_router.router,
        exec_router.router,
        maintenance_router,  # retention, backup (and what the stale sweep reads)
    ),
    build=with_hub(GenerationRunner),
)
