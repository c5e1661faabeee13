"""The ASGI app: `create_app(settings)` and `app = create_app()` for `uvicorn app.main:app`."""

from __future__ import annotations

import logging
import math
import re
import sys
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from app import components
from app.core import health, retention
from app.core.body_guard import BodyGuardMiddleware, BodyLimits
from app.core.config import Settings, config_error
from app.core.context import AppContext
from app.core.db import check_reachable
from app.core.deps import KnownQuery
from app.core.errors import AppError, StartupError
from app.core.hosts import HostGuardMiddleware
from app.core.migrate import check_schema, revision_state, upgrade
from app.core.openapi import install as install_error_contract
from app.core.sweep import start_sweeper
from app.unified import install as install_unified
from app.web.router import install as install_web

VERSION = "0.1.0"
log = logging.getLogger("app")


class TrackingApp(FastAPI):
    """FastAPI with a lifespan that reports any failure as one sentence, not a traceback.

    Its state lives on `app.state`: `ctx` (the AppContext), `components` (the enabled
    registry entries), `runtimes` (name -> Runtime: runner and event hub) and `started`.
    """

    @property
    def ctx(self) -> AppContext:
        """Return the app's shared context (`app.state.ctx`)."""
        ctx: AppContext = self.state.ctx
        return ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve HTTP and WebSocket; run the lifespan protocol ourselves."""
        if scope["type"] != "lifespan":
            await super().__call__(scope, receive, send)
            return
        await receive()  # lifespan.startup
        try:
            await run_in_threadpool(self.startup)
        except Exception as exc:
            message = _sentence(exc)
            log.error("start-up failed: %s", message)
            try:
                await run_in_threadpool(self.shutdown)  # stop what did start, close databases
            except Exception as again:
                log.error("stopping after the failed start-up failed too: %s", _sentence(again))
            await send({"type": "lifespan.startup.failed", "message": message})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await run_in_threadpool(self.shutdown)
        except Exception as exc:
            message = _sentence(exc)
            log.error("shutdown failed: %s", message)
            await send({"type": "lifespan.shutdown.failed", "message": message})
            return
        await send({"type": "lifespan.shutdown.complete"})

    def startup(self) -> None:
        """Open and migrate every component's database, then start the components."""
        ctx: AppContext = self.state.ctx
        ctx.keys.load()  # a missing or bad APP_API_KEYS_FILE stops the start
        serving = []
        for comp in self.state.components:
            db = ctx.database(comp.name)
            check_reachable(db)
            if ctx.settings.migrate_on_start:
                try:
                    upgrade(comp.name, db, backup=ctx.settings.backup_before_migrate)
                except StartupError:
                    raise
                except Exception as exc:
                    raise StartupError(f"migrating the {comp.name} database failed: {exc}") from exc
            else:
                state = revision_state(comp.name, db)
                if not state.at_head:
                    # Its tables may not exist: serve health and docs, but start no workers.
                    log.error(
                        "%s database is at revision %s, head is %s; run `make migrate`",
                        comp.name,
                        state.current,
                        state.head,
                    )
                    continue
            check_schema(comp.name, db, comp.metadata)
            runtime = self.state.runtimes[comp.name]
            runtime.start()
            self.state.started.append(runtime)
            serving.append(comp)
        sweeper = retention.sweeper_for(ctx, serving)  # APP_<KEY>_RETENTION_DAYS, when set
        sweeper.start()
        self.state.started.append(sweeper)
        self.state.started.append(start_sweeper(ctx, self.state.runtimes, self.state.started))

    def shutdown(self) -> None:
        """Stop the components and close every database (all of them, even when one fails)."""
        failures: list[BaseException] = []
        while self.state.started:
            try:
                self.state.started.pop().stop()
            except Exception as exc:
                failures.append(exc)
        self.state.ctx.registry.dispose()
        if failures:
            raise failures[0]


def _sentence(exc: BaseException) -> str:
    # An AppError/StartupError already is a sentence; anything else is named by its type.
    if isinstance(exc, StartupError | AppError):
        return str(exc)
    text = " ".join(str(exc).split()) or "no detail"
    return f"{type(exc).__name__}: {text}"


def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    body: dict[str, Any] = {"detail": exc.detail, "code": exc.code, **exc.extra}
    return JSONResponse(body, status_code=exc.status_code)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _finite(value: Any) -> Any:
    # JSON has no NaN or Infinity and UTF-8 no lone surrogates: echo such inputs as text.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_finite(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(_finite(list(exc.errors())))
    # Malformed JSON is its own code; any other refused field is a validation error.
    broken = bool(errors) and all(e.get("type") == "json_invalid" for e in errors)
    code = "invalid_json" if broken else "validation_error"
    return JSONResponse({"detail": errors, "code": code}, status_code=422)


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse({"detail": "internal server error", "code": "internal"}, status_code=500)


def _summaries_from_docstrings(router: APIRouter) -> APIRouter:
    # Each route's one-line docstring is its OpenAPI summary (the rest stays the description).
    for route in router.routes:
        if isinstance(route, APIRoute) and not route.summary and route.endpoint.__doc__:
            route.summary = route.endpoint.__doc__.strip().splitlines()[0].rstrip(".")
    return router


def create_app(settings: Settings | None = None) -> TrackingApp:
    """Build the app: plug in the enabled components, health, docs and error handling."""
    settings = settings or Settings()
    app = TrackingApp(
        title="Accelerate Tracking",
        version=VERSION,
        description=(
            "Generate, run and track model test suites across hardware backends. "
            "Test Suite under /api/test, Generator under /api/generator."
        ),
        dependencies=[KnownQuery],
        docs_url=None,  # served offline by app.web (install_web)
        redoc_url=None,
    )
    ctx = AppContext(settings)
    enabled = tuple(c for c in components.COMPONENTS if c.name in settings.components)
    app.state.ctx = ctx
    app.state.components = enabled
    app.state.runtimes = {c.name: c.build(ctx) for c in enabled}
    app.state.started = []
    for comp in enabled:
        for router in comp.routers:
            app.include_router(_summaries_from_docstrings(router))
    app.include_router(_summaries_from_docstrings(health.router))
    install_web(app)
    limits = BodyLimits(
        settings.max_body_bytes, settings.max_small_body_bytes, ctx.keys, settings.protect_reads
    )
    app.add_middleware(BodyGuardMiddleware, limits=limits)
    install_unified(app, enabled)  # /api/db/...; its path aliases outermost, before the guard
    app.add_middleware(HostGuardMiddleware, allowed_hosts=settings.served_hosts())  # outermost
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _unexpected)
    install_error_contract(app, settings)  # HTTP errors as ErrorBody; /openapi.json says so
    return app


def _default_app() -> TrackingApp:
    # `uvicorn app.main:app`: a configuration error is one line naming the variable, not a
    # traceback, and the process exits non-zero.
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: {config_error(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    return create_app(settings)


app = _default_app()
