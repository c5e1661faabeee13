"""Paging of list endpoints: limit/offset in, X-Total-Count out."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Query, Response


@dataclass(frozen=True)
class Page:
    """A page request."""

    limit: int
    offset: int


def page_params(
    limit: int = Query(100, ge=1, le=1000, description="rows per page (1-1000)"),
    offset: int = Query(0, ge=0, description="rows to skip"),
) -> Page:
    """Read `limit` and `offset` from the query string."""
    return Page(limit=limit, offset=offset)


def set_total(response: Response, total: int) -> None:
    """Put the total number of matches in the X-Total-Count header."""
    response.headers["X-Total-Count"] = str(total)
