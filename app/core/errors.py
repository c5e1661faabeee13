"""Application errors: one family, one JSON shape ({"detail", "code"})."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base of every error the app raises on purpose; rendered as {"detail", "code"}."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self, detail: str, *, code: str | None = None, extra: dict[str, Any] | None = None
    ):
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra or {}


class BadRequest(AppError):
    """The request is well-formed but asks for something not allowed (400)."""


class Unauthorized(AppError):
    """No API key was sent where one is required (401)."""

    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    """The API key sent is not one of the configured keys (403)."""

    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    """The addressed object does not exist (404)."""

    status_code = 404
    code = "not_found"


class Conflict(AppError):
    """The request conflicts with the current state (409)."""

    status_code = 409
    code = "conflict"


class Unprocessable(AppError):
    """The body is valid JSON but its content cannot be processed (422)."""

    status_code = 422
    code = "unprocessable"


class StartupError(Exception):
    """The server cannot start; the message is one clear sentence for the operator."""


class DatabaseInUseError(StartupError):
    """Another process holds the DuckDB file's lock."""
