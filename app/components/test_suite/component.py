"""The Test Suite component: its tables, database API and execution API."""

from __future__ import annotations

from app.components.test_suite.models import Base
from app.core.context import AppContext, BasicRuntime, Component, Runtime


def build(ctx: AppContext) -> Runtime:
    """Build the Test Suite's routers and background workers."""
    from app.components.test_suite import junit_router, query_router
    from app.components.test_suite.exec_router import build_exec_router
    from app.components.test_suite.router import build_db_router
    from app.components.test_suite.runner import SuiteRunner
    from app.core.live import EventHub

    hub = EventHub()
    runner = SuiteRunner(ctx, hub)
    return BasicRuntime(
        routers=[
            build_db_router(ctx),
            build_exec_router(ctx, runner, hub),
            query_router.router,
            junit_router.router,
        ],
        on_start=[runner.start],
        on_stop=[runner.stop],
    )


component = Component(name="test_suite", title="Test Suite", metadata=Base.metadata, build=build)
