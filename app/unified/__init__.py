"""The cross-component API (/api/db/...): overview, model, search and the per-component aliases."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.core.context import Component
from app.unified.aliases import DbAliasMiddleware, aliases_of
from app.unified.router import router

__all__ = ["DbAliasMiddleware", "install", "router"]


def install(app: FastAPI, enabled: Sequence[Component]) -> None:
    """Serve /api/db/... for the enabled components (nothing when none is enabled).

    Call it after every other middleware is added: the alias middleware must be outermost,
    so `/api/db/test/...` is rewritten to `/api/test/db/...` before the body guard, the key
    checks and routing see it.
    """
    if not enabled:
        return
    for route in router.routes:
        if isinstance(route, APIRoute) and not route.summary and route.endpoint.__doc__:
            route.summary = route.endpoint.__doc__.strip().splitlines()[0].rstrip(".")
    app.include_router(router)
    app.add_middleware(DbAliasMiddleware, aliases=aliases_of(enabled))
