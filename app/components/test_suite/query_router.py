"""Read-only SQL over the Test Suite's tables: POST /api/test/db/query."""

from __future__ import annotations

from app.components.test_suite.models import Base
from app.core.query_routes import query_router

router = query_router("test_suite", "/api/test/db", "test-db", Base.metadata, "Test Suite")
