"""Read-only SQL over the Generator's tables: POST /api/generator/db/query."""

from __future__ import annotations

from app.components.generator.models import Base
from app.core.query_routes import query_router

router = query_router("generator", "/api/generator/db", "generator-db", Base.metadata, "Generator")
