"""The error contract: every error answer is an `ErrorBody`, and /openapi.json says so per route.

The rules are applied once, when the schema is built, from what each operation is (its method,
its path parameters, its body, whether API keys are configured), so a new route documents its
errors without a line of its own. A route may still declare extra statuses in `responses=`;
their schema is replaced by the one error model too.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.config import Settings
from app.core.keys import key_needed
from app.core.schemas import ErrorBody

ERROR_REF = "#/components/schemas/ErrorBody"
WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})
BODY_METHODS = frozenset({"post", "put", "patch"})  # the body guard reads (and counts) these
# FastAPI's own error answers (a route that does not exist, a method it does not take, a body it
# cannot parse) get a stable code like the app's own errors.
HTTP_CODES = {
    400: "malformed_body",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    415: "unsupported_media_type",
}
DESCRIPTIONS = {
    400: "malformed body, a disallowed value or path, or a host this server does not serve",
    401: "an API key is required (X-API-Key)",
    403: "the API key is not valid, or lacks the scope this operation needs",
    404: "not found",
    409: "conflicts with the current state",
    413: "the request body is larger than this route's limit",
    422: "invalid input: `detail` lists the fields (FastAPI's validation) or says why",
    429: "too many at once; retry shortly",
    503: "busy or too slow; retry shortly",
}


def http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Render Starlette's HTTP errors (404 route, 405, body parse 400) as an ErrorBody."""
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 400:
        detail = f"the request body could not be parsed ({detail})"
    return JSONResponse(
        {"detail": detail, "code": code}, status_code=exc.status_code, headers=exc.headers
    )


def needs_key(method: str, path: str, settings: Settings) -> bool:
    """Return whether an operation needs X-API-Key (writes; reads too with protect_reads)."""
    return (
        settings.uses_keys and key_needed(method.upper(), path, settings.protect_reads) is not None
    )


def error_statuses(
    method: str, path: str, operation: dict[str, Any], settings: Settings
) -> set[int]:
    """Return the error statuses one operation can answer, by what it is."""
    statuses = {400, 422}  # the host rule and malformed input; unknown query parameters
    if "{" in path:
        statuses.add(404)
    if method in BODY_METHODS:
        statuses.add(413)
    if method in WRITE_METHODS:
        statuses.add(409)
    if needs_key(method, path, settings):
        statuses |= {401, 403}
    declared = {int(s) for s in operation.get("responses", {}) if str(s).isdigit()}
    return statuses | {s for s in declared if s >= 400}


def _error_response(status: int, current: dict[str, Any] | None) -> dict[str, Any]:
    description = (current or {}).get("description") or DESCRIPTIONS.get(status, "error")
    if status == 422 or description == "Validation Error":
        description = DESCRIPTIONS[422]
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }


def apply_error_contract(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Declare every operation's error responses with the one error model (in place)."""
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status in sorted(error_statuses(method, path, operation, settings)):
                if status == 503 and path == "/health":
                    continue  # health answers its own report with 503, not an error
                responses[str(status)] = _error_response(status, responses.get(str(status)))
            if needs_key(method, path, settings):
                operation["security"] = [{"ApiKey": []}]
    if settings.uses_keys:  # Swagger UI's "Authorize" then sends the key
        schema.setdefault("components", {})["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        }
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):  # no route answers so
        components.pop(unused, None)
    return schema


def install(app: FastAPI, settings: Settings) -> None:
    """Render HTTP errors as ErrorBody and build /openapi.json with the error contract."""
    app.add_exception_handler(StarletteHTTPException, http_error)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            model = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
            definitions = model.pop("$defs", {})
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(definitions)
            schemas["ErrorBody"] = model
            app.openapi_schema = apply_error_contract(schema, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
