"""The Generator component: its tables, database API and execution API."""

from __future__ import annotations

from app.components.generator.models import Base
from app.core.context import AppContext, BasicRuntime, Component, Runtime


def build(ctx: AppContext) -> Runtime:
    """Build the Generator's routers and background workers."""
    from app.components.generator import query_router
    from app.components.generator.exec_router import build_exec_router
    from app.components.generator.router import build_db_router
    from app.components.generator.runner import GenerationRunner
    from app.core.live import EventHub

    hub = EventHub()
    runner = GenerationRunner(ctx, hub)
    return BasicRuntime(
        routers=[build_db_router(ctx), build_exec_router(ctx, runner, hub), query_router.router],
        on_start=[runner.start],
        on_stop=[runner.stop],
    )


component = Component(name="generator", title="Generator", metadata=Base.metadata, build=build)
