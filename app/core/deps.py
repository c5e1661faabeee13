"""Typed FastAPI dependencies: what a route needs, read from `request.app.state`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from app.core.config import Settings
from app.core.context import AppContext
from app.core.db import Database


def get_context(request: Request) -> AppContext:
    """Return the app's shared context (settings, databases)."""
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


def get_settings(ctx: ContextDep) -> Settings:
    """Return the app's settings."""
    return ctx.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def database_of(component: str) -> Callable[[AppContext], Database]:
    """Return a dependency that yields one component's `Database`."""

    def dependency(ctx: ContextDep) -> Database:
        return ctx.database(component)

    dependency.__name__ = f"{component}_database"
    return dependency


def _require_write(ctx: ContextDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    ctx.check_key(x_api_key)


def _require_read(ctx: ContextDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    if ctx.settings.protect_reads:
        ctx.check_key(x_api_key)


WriteAccess = Depends(_require_write)
"""Use as `dependencies=[WriteAccess]`: API keys on writes, deletes, export and import."""

ReadAccess = Depends(_require_read)
"""Use as `dependencies=[ReadAccess]`: API keys on reads when `protect_reads` is set."""
