"""GET /health: each enabled component database's reachability and schema revision."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from app.core.deps import ContextDep, RegistryDep
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


def database_health(ctx: ContextDep, name: str) -> DatabaseHealth:
    """Return one component database's reachability and revision (failures reported, not raised)."""
    url = ctx.settings.database_url(name)
    try:
        state = revision_state(name, ctx.database(name))
    except Exception as exc:  # a health check reports failures, it does not raise them
        return DatabaseHealth(component=name, database=redact(url), reachable=False, error=str(exc))
    return DatabaseHealth(
        component=name,
        database=redact(url),
        reachable=True,
        revision=state.current,
        head=state.head,
        at_head=state.at_head,
    )


router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(request: Request, response: Response, ctx: ContextDep, enabled: RegistryDep) -> Health:
    """Report each database's reachability and schema revision."""
    report = {comp.name: database_health(ctx, comp.name) for comp in enabled}
    ok = all(h.reachable and h.at_head for h in report.values())
    if not ok:
        response.status_code = 503
    return Health(status="ok" if ok else "degraded", version=request.app.version, components=report)
