"""The Test Suite component: its tables, database API and execution API."""

from __future__ import annotations

from app.components.test_suite.models import Base
from app.core.context import AppContext, BasicRuntime, Component, Runtime


def build(ctx: AppContext) -> Runtime:
    """Build the Test Suite's routers and background workers."""
    from app.components.test_suite.router import build_db_router

    return BasicRuntime(routers=[build_db_router(ctx)])


component = Component(name="test_suite", title="Test Suite", metadata=Base.metadata, build=build)
