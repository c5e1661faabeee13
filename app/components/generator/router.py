"""HTTP routes of the component's database API."""

from __future__ import annotations

from fastapi import APIRouter

from app.core.context import AppContext


def build_db_router(ctx: AppContext) -> APIRouter:
    """Return the database API router."""
    return APIRouter(prefix="/api/generator/db", tags=["generator-db"])
