"""Typed FastAPI dependencies: what a route needs, read from `request.app.state`."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from app.core.config import Settings
from app.core.context import AppContext, Component, Runtime
from app.core.db import Database
from app.core.keys import required_scope
from app.core.live import EventHub

T = TypeVar("T")


def get_context(connection: HTTPConnection) -> AppContext:
    """Return the app's shared context (settings, databases)."""
    ctx: AppContext = connection.app.state.ctx
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


def get_components(connection: HTTPConnection) -> tuple[Component, ...]:
    """Return the components this app serves (the enabled part of `COMPONENTS`)."""
    enabled: tuple[Component, ...] = connection.app.state.components
    return enabled


RegistryDep = Annotated[tuple[Component, ...], Depends(get_components)]


def runtime_of(connection: HTTPConnection, component: str) -> Runtime:
    """Return a component's runtime (its runner and event hub) from `app.state.runtimes`."""
    runtime: Runtime = connection.app.state.runtimes[component]
    return runtime


def runner_of(component: str, kind: type[T]) -> Callable[[HTTPConnection], T]:
    """Return a dependency that yields one component's runner, typed as `kind`."""

    def dependency(connection: HTTPConnection) -> T:
        runner = runtime_of(connection, component).runner
        if not isinstance(runner, kind):
            raise TypeError(f"{component}'s runner is {type(runner).__name__}, not {kind.__name__}")
        return runner

    dependency.__name__ = f"{component}_runner"
    return dependency


def hub_of(component: str) -> Callable[[HTTPConnection], EventHub]:
    """Return a dependency that yields one component's event hub."""

    def dependency(connection: HTTPConnection) -> EventHub:
        hub = runtime_of(connection, component).hub
        if hub is None:
            raise TypeError(f"{component} has no event hub")
        return hub

    dependency.__name__ = f"{component}_hub"
    return dependency


def _require_write(
    connection: HTTPConnection, ctx: ContextDep, x_api_key: Annotated[str | None, Header()] = None
) -> None:
    # Admin operations (delete, import, export, SQL, retention, backup) are named by one table,
    # `app.core.keys.ADMIN_PATHS`, which the body guard reads too: both decide alike.
    needed = required_scope(connection.scope.get("method", "GET"), connection.scope["path"])
    ctx.check_key(x_api_key, "admin" if needed == "admin" else "write")


def _require_admin(ctx: ContextDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    ctx.check_key(x_api_key, "admin")


def _require_read(
    connection: HTTPConnection, ctx: ContextDep, x_api_key: Annotated[str | None, Header()] = None
) -> None:
    # A WebSocket checks keys itself (app.core.live.websocket_session): a browser cannot send
    # headers there, so it may offer the key as `api_key` in the query or in an `auth` message.
    if connection.scope["type"] == "websocket":
        return
    if ctx.settings.protect_reads:
        ctx.check_key(x_api_key, "read")


WriteAccess = Depends(_require_write)
"""Use as `dependencies=[WriteAccess]`: a write key; an admin key where `ADMIN_PATHS` says."""

AdminAccess = Depends(_require_admin)
"""Use as `dependencies=[AdminAccess]`: an admin key (delete, import, export, SQL, backup)."""

ReadAccess = Depends(_require_read)
"""Use as `dependencies=[ReadAccess]`: a read key on reads when `protect_reads` is set."""


# --- unknown query parameters ---------------------------------------------------------------

# By route id; an entry goes with its route (APIRoute is unhashable, so no WeakKeyDictionary):
# apps built and dropped in tests must not leave an entry a new route could reuse by id.
_DECLARED: dict[int, frozenset[str]] = {}


def _query_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def declared_query(route: APIRoute) -> frozenset[str]:
    """Return the query parameter names a route declares (its own, its dependencies', models')."""
    cached = _DECLARED.get(id(route))
    if cached is not None:
        return cached
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        pending.extend(dependant.dependencies)
        for param in dependant.query_params:
            model = _query_model(param.field_info.annotation)
            if model is None:
                names.add(param.alias)
                continue
            for name, info in model.model_fields.items():
                names.add(info.alias or name)
    declared = _DECLARED[id(route)] = frozenset(names)
    weakref.finalize(route, _DECLARED.pop, id(route), None)
    return declared


OWN_QUERY = {"x-validates-own-query": True}
"""`openapi_extra` of a route that validates its whole query string itself (dashboard pages)."""


def _refuse_unknown_query(connection: HTTPConnection) -> None:
    if connection.scope["type"] != "http" or not connection.query_params:
        return
    route = connection.scope.get("route")
    if not isinstance(route, APIRoute) or (route.openapi_extra or {}).get("x-validates-own-query"):
        return
    known = declared_query(route)
    unknown = [name for name in dict.fromkeys(connection.query_params.keys()) if name not in known]
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": "Unknown query parameter",
                    "input": connection.query_params.get(name),
                }
                for name in unknown
            ]
        )


KnownQuery = Depends(_refuse_unknown_query)
"""App-wide: a query parameter no route declares is a 422 naming it (not silently ignored)."""


def _prefers_minimal(
    response: Response,
    prefer: Annotated[
        str | None,
        Header(
            alias="Prefer",
            description="`return=minimal` answers with the short form of what was written (a "
            "run's or task's summary without child rows, a batch without its members), built "
            "from the write itself where it can be: what a client that writes often wants",
        ),
    ] = None,
) -> bool:
    """Return True (and say so in `Preference-Applied`) when the client sent return=minimal."""
    if prefer and "return=minimal" in prefer.replace(" ", "").lower():
        response.headers["Preference-Applied"] = "return=minimal"
        return True
    return False


PrefersMinimal = Annotated[bool, Depends(_prefers_minimal)]
"""A write route's `Prefer: return=minimal` (RFC 7240), answered in `Preference-Applied`."""
AnswersMinimal = Depends(_prefers_minimal)
"""For a route whose answer already is what it wrote (a count, the step): `Prefer:
return=minimal` is accepted, and applied, as it is."""
