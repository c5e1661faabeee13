"""Retention and backup of the Test Suite's runs: POST /api/test/db/retention and /backup."""

from __future__ import annotations

from app.components.test_suite.models import (
    CHILD_TABLES,
    Run,
    RunBatch,
    RunBatchLink,
    RunCase,
    RunMetric,
    RunStep,
    RunTag,
)
from app.core.maintenance_routes import maintenance_router
from app.core.retention import RetentionSpec
from app.core.sweep import Watched, watch

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

STALE = watch(
    Watched(
        "test_suite",
        Run,
        Run.run_id,
        (
            (RunStep, RunStep.run_id, (RunStep.started_at, RunStep.completed_at)),
            (RunMetric, RunMetric.run_id, (RunMetric.timestamp,)),
            (RunCase, RunCase.run_id, ()),
        ),
    )
)
"""What the stale-run sweep reads of a run: its row, steps, metrics and cases."""
