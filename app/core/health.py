"""GET /health: each component database's reachability and schema revision."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from app.core.context import AppContext, Component
from app.core.migrate import revision_state


class DatabaseHealth(BaseModel):
    """One component database's state."""

    component: str
    database: str
    reachable: bool
    revision: str | None = None
    head: str | None = None
    at_head: bool = False
    error: str | None = None


class Health(BaseModel):
    """The service's state: ok when every database is reachable and at head."""

    status: str
    version: str
    components: dict[str, DatabaseHealth]


def redact(url: str) -> str:
    """Return a URL with any password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def build_health_router(
    ctx: AppContext, components: tuple[Component, ...], version: str
) -> APIRouter:
    """Return the router of GET /health."""
    router = APIRouter(tags=["health"])

    @router.get("/health", response_model=Health, responses={503: {"model": Health}})
    def health(response: Response) -> Health:
        """Report each database's reachability and schema revision."""
        report: dict[str, DatabaseHealth] = {}
        for comp in components:
            url = ctx.settings.database_url(comp.name)
            try:
                state = revision_state(comp.name, ctx.database(comp.name))
                report[comp.name] = DatabaseHealth(
                    component=comp.name,
                    database=redact(url),
                    reachable=True,
                    revision=state.current,
                    head=state.head,
                    at_head=state.at_head,
                )
            except Exception as exc:  # a health check reports failures, it does not raise them
                report[comp.name] = DatabaseHealth(
                    component=comp.name, database=redact(url), reachable=False, error=str(exc)
                )
        ok = all(h.reachable and h.at_head for h in report.values())
        if not ok:
            response.status_code = 503
        return Health(status="ok" if ok else "degraded", version=version, components=report)

    return router
