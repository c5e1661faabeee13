"""Dashboard pages: each page is a route, a template and one data call (app/web/data.py).

Every page answers at three URLs: `<path>` (the HTML page), `/ui/part<path>` (its content
alone, fetched by the page's script with the X-API-Key when reads are protected) and
`/ui/data<path>` (the JSON the page is built from). Filters are in the query string.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles

from app.core.context import AppContext
from app.core.deps import OWN_QUERY, ContextDep, ReadAccess
from app.core.errors import AppError
from app.web import assets, data

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["asset"] = assets.url
templates.env.globals["href"] = data.href
templates.env.filters["pct"] = lambda v: "–" if v is None else f"{v * 100:.0f}%"
templates.env.filters["secs"] = lambda v: "–" if v is None else f"{v:.2f}s"
templates.env.filters["num"] = lambda v: "–" if v is None else f"{v:.4g}"
templates.env.filters["rel"] = lambda v: "–" if v is None else f"{v * 100:+.1f}%"
templates.env.filters["p"] = lambda v: "–" if v is None else f"{v:.3g}"
templates.env.filters["when"] = lambda v: "–" if v is None else v.strftime("%Y-%m-%d %H:%M:%S")

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class PageSpec:
    """One page: its path, template, filters and data call."""

    name: str
    path: str
    template: str
    filters: type[data.Filters]
    build: Callable[..., dict[str, Any]]


@contextmanager
def _sessions(ctx: AppContext) -> Iterator[tuple[Session | None, Session | None]]:
    enabled = ctx.settings.components
    with ExitStack() as stack:
        ts = (
            stack.enter_context(ctx.database("test_suite").reading())
            if "test_suite" in enabled
            else None
        )
        gen = (
            stack.enter_context(ctx.database("generator").reading())
            if "generator" in enabled
            else None
        )
        yield ts, gen


def _filters(spec: PageSpec, request: Request) -> data.Filters:
    raw: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        raw[key] = None if value == "" else value
    try:
        return spec.filters.model_validate(raw)
    except ValidationError as exc:
        raise _BadFilters(exc) from exc


class _BadFilters(AppError):
    status_code = 422
    code = "invalid_filters"

    def __init__(self, exc: ValidationError) -> None:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        super().__init__(f"invalid page filters: {errors}")


def _build(spec: PageSpec, request: Request, ctx: AppContext) -> dict[str, Any]:
    filters = _filters(spec, request)
    with _sessions(ctx) as (ts, gen):
        if ts is None and spec.name != "task":
            raise _Disabled()
        extra: dict[str, Any] = dict(request.path_params)
        if spec.name == "task":
            extra["output_root"] = ctx.settings.folder("output")
        elif spec.name == "run":
            extra["settings"] = ctx.settings
        return spec.build(ts, gen, filters, **extra)


class _Disabled(AppError):
    status_code = 404
    code = "not_found"

    def __init__(self) -> None:
        super().__init__("the test_suite component is not enabled")


def _context(request: Request, page: dict[str, Any], spec: PageSpec) -> dict[str, Any]:
    return {
        "request": request,
        "page": page,
        "spec": spec,
        "query": request.url.query,
    }


def _register(spec: PageSpec) -> None:
    def page_html(request: Request, ctx: ContextDep) -> Response:
        part_url = f"/ui/part{request.url.path}" + (
            f"?{request.url.query}" if request.url.query else ""
        )
        status = 200
        shell: dict[str, Any] = {
            "request": request,
            "spec": spec,
            "part_url": part_url,
            "data_url": part_url.replace("/ui/part", "/ui/data", 1),
            "protect_reads": ctx.settings.protect_reads,
            "body": None,
        }
        if not ctx.settings.protect_reads:
            # Reads are open: render the content into the page, no second request.
            try:
                page = _build(spec, request, ctx)
                shell["title"] = page.get("title", spec.name)
                shell["body"] = templates.get_template(spec.template).render(
                    _context(request, page, spec)
                )
            except AppError as exc:
                shell["title"] = "Not found" if exc.status_code == 404 else "Error"
                shell["error"] = exc.detail
                status = exc.status_code
        return templates.TemplateResponse(request, "shell.html", shell, status_code=status)

    def page_part(request: Request, ctx: ContextDep) -> HTMLResponse:
        page = _build(spec, request, ctx)
        html = templates.get_template(spec.template).render(_context(request, page, spec))
        return HTMLResponse(html, headers={"X-Page-Title": _header_safe(page.get("title", ""))})

    def page_data(request: Request, ctx: ContextDep) -> JSONResponse:
        return JSONResponse(jsonable_encoder(_build(spec, request, ctx)))

    page_html.__doc__ = f"Show the {spec.name} page."
    page_part.__doc__ = f"Return the {spec.name} page's content."
    page_data.__doc__ = f"Return the data of the {spec.name} page."
    # Pages validate their whole query string with their filter model (422 invalid_filters).
    router.add_api_route(
        spec.path, page_html, methods=["GET"], name=f"web_{spec.name}", openapi_extra=OWN_QUERY
    )
    for prefix, endpoint in (("/ui/part", page_part), ("/ui/data", page_data)):
        router.add_api_route(
            f"{prefix}{spec.path}",
            endpoint,
            methods=["GET"],
            dependencies=[ReadAccess],
            openapi_extra=OWN_QUERY,
        )


def _header_safe(text: str) -> str:
    return text.encode("ascii", "replace").decode()[:200]


PAGES = (
    PageSpec("overview", "/", "overview.html", data.OverviewFilters, data.overview),
    PageSpec("model", "/models/{model_name:path}", "model.html", data.ModelFilters, data.model),
    PageSpec("run", "/runs/{run_id}", "run.html", data.RunFilters, data.run),
    PageSpec("batch", "/batches/{batch_id}", "batch.html", data.BatchFilters, data.batch),
    PageSpec("flaky", "/flaky", "flaky.html", data.FlakyFilters, data.flaky),
    PageSpec(
        "regressions", "/regressions", "regressions.html", data.RegressionsFilters, data.regressions
    ),
    PageSpec("compare", "/compare", "compare.html", data.CompareFilters, data.compare),
    PageSpec("tests", "/tests", "tests.html", data.CaseListFilters, data.tests),
    PageSpec("test", "/tests/history", "test.html", data.HistoryFilters, data.test_history),
    PageSpec("sql", "/sql", "sql.html", data.SqlFilters, data.sql),
    PageSpec("generator", "/generator", "generator.html", data.GeneratorFilters, data.generator),
    PageSpec("task", "/generator/tasks/{task_id}", "task.html", data.EmptyFilters, data.task),
)
for _spec in PAGES:
    _register(_spec)


@router.get("/ui/pygments.css")
def pygments_css() -> Response:
    """Return the stylesheet of highlighted code."""
    return Response(data.pygments_css(), media_type="text/css")


# --- offline API docs ------------------------------------------------------------------------


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Show Swagger UI, served from the app's own assets."""
    return get_swagger_ui_html(
        openapi_url=str(request.app.openapi_url),
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url="/docs/oauth2-redirect",
        swagger_js_url=assets.url("docs", "swagger-ui-bundle.js"),
        swagger_css_url=assets.url("docs", "swagger-ui.css"),
        swagger_favicon_url="/static/favicon.svg",
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    """Finish Swagger UI's OAuth2 flow."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """Show ReDoc, served from the app's own assets."""
    return get_redoc_html(
        openapi_url=str(request.app.openapi_url),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url="/ui/redoc.standalone.js",
        redoc_favicon_url="/static/favicon.svg",
        with_google_fonts=False,
    )


@router.get("/ui/redoc.standalone.js")
def redoc_js(request: Request) -> Response:
    """Return ReDoc's bundle (its CDN logo made local)."""
    plain, packed = assets.redoc_js()
    headers = {"Cache-Control": "public, max-age=86400", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(packed, media_type="text/javascript", headers=headers)
    return Response(plain, media_type="text/javascript", headers=headers)


def install(app: FastAPI) -> None:
    """Add the dashboard, the offline docs and their static files to an app."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for name, folder in assets.FOLDERS.items():
        # The vendor bundles are large (plotly.min.js ~4.8 MB): compress them on the way.
        app.mount(
            f"/assets/{name}",
            GZipMiddleware(StaticFiles(directory=folder), minimum_size=1024),
            name=f"assets-{name}",
        )
