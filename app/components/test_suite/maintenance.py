"""Retention and backup of the Test Suite's runs: POST /api/test/db/retention and /backup."""

from __future__ import annotations

from app.components.test_suite.models import (
    CHILD_TABLES,
    Run,
    RunBatch,
    RunBatchLink,
    RunTag,
)
from app.core.maintenance_routes import maintenance_router
from app.core.retention import RetentionSpec

SPEC = RetentionSpec(
    component="test_suite",
    owner=Run,
    key="run_id",
    children=CHILD_TABLES,
    tags=RunTag,
    batches=RunBatch,
    member_batch=RunBatchLink.batch_id,
    member_owner=RunBatchLink.run_id,
)

router = maintenance_router(SPEC, "/api/test/db", "test-db", "test", "Test Suite")
