"""Paging of list endpoints: limit/offset in, X-Total-Count out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Response

MAX_OFFSET = 1_000_000_000
"""The largest `offset` a list accepts (larger: 422; DuckDB's OFFSET is a signed 64-bit int)."""


@dataclass(frozen=True)
class Page:
    """A page request."""

    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=1000, description="rows per page (1-1000)")] = 100,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description=f"rows to skip (0-{MAX_OFFSET})")
    ] = 0,
) -> Page:
    """Read `limit` and `offset` from the query string."""
    return Page(limit=limit, offset=offset)


PageDep = Annotated[Page, Depends(page_params)]
"""A list route's page: `limit` (1-1000, default 100) and `offset` (0-MAX_OFFSET)."""


def set_total(response: Response, total: int) -> None:
    """Put the total number of matches in the X-Total-Count header."""
    response.headers["X-Total-Count"] = str(total)
