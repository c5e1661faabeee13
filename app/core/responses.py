"""JSON answers straight from the rows the store built (their types already are the model's)."""

from __future__ import annotations

from typing import Any

import pydantic_core
from fastapi import Response


def rows_response(data: Any, *, total: int | None = None) -> Response:
    """Serialise store rows to JSON in one pass (no second validation through the models).

    The route still declares its response model, so /docs describes the same shape; the rows
    come from typed SQL columns and cost a pydantic round trip per row to re-validate (measured:
    116 ms of the performance report's time at 40,000 metric rows).
    """
    response = Response(pydantic_core.to_json(data), media_type="application/json")
    if total is not None:
        response.headers["X-Total-Count"] = str(total)
    return response
