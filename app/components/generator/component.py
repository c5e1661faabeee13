"""The Generator component: its tables, database API and execution API."""

from __future__ import annotations

from app.components.generator.models import Base
from app.core.context import AppContext, BasicRuntime, Component, Runtime


def build(ctx: AppContext) -> Runtime:
    """Build the Generator's routers and background workers."""
    from app.components.generator.router import build_db_router

    return BasicRuntime(routers=[build_db_router(ctx)])


component = Component(name="generator", title="Generator", metadata=Base.metadata, build=build)
