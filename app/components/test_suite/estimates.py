"""How long a run should still take: the history of its model and devices, else its progress."""

from __future__ import annotations

import statistics

from sqlalchemy.orm import Session

from app.components.test_suite import store
from app.components.test_suite.models import Run
from app.core.pagination import Page

HISTORY_RUNS = 20
"""The newest completed runs of the same model, devices and test type an estimate reads."""


def expected_duration(session: Session, run: Run) -> float | None:
    """Return the median duration (s) of the model's recent completed runs on the same devices."""
    devices = list(run.hardware or [])
    if not devices:
        return None
    filters = store.RunFilter(
        status=["completed"],
        model_name=run.model_name,
        test_type=run.test_type,
        hardware=devices[0],
    )
    rows, _ = store.list_runs(session, filters, Page(limit=HISTORY_RUNS, offset=0))
    durations = [
        float(r["duration"])
        for r in rows
        if r["run_id"] != run.run_id and list(r["hardware"]) == devices and r["duration"]
    ]
    return statistics.median(durations) if durations else None


def remaining(
    elapsed: float | None, progress: float, expected: float | None, running: bool
) -> float | None:
    """Return the estimated seconds left, from the history when there is one, else progress."""
    if elapsed is None or not running:
        return None
    if expected is not None and elapsed < expected:
        return expected - elapsed
    if 0 < progress < 1:
        return elapsed / progress * (1 - progress)
    return None
