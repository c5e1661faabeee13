"""Lifecycle rules runs and tasks share: durations, transitions, closing fields, batch roll-ups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from app.core.errors import Conflict, NotFound
from app.core.models import utcnow
from app.core.schemas import MetricColumns, Metrics
from app.core.statuses import TERMINAL, batch_status, transition_allowed

T = TypeVar("T")

# A batch whose members all ended has ended too: these derived statuses close it.
BATCH_DONE = frozenset({"completed", "partial", "error", "cancelled"})


def seconds(start: datetime | None, end: datetime | None) -> float | None:
    """Return the seconds from start to end (never negative), or None if either is missing."""
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def end_time(started_at: datetime | None) -> datetime:
    """Return "now" as an end time, never earlier than the start (clients may send starts)."""
    now = utcnow()
    return max(now, started_at) if started_at is not None else now


def require(found: T | None, what: str) -> T:
    """Return a row that was looked up, or raise 404 naming `what` (e.g. "run 42")."""
    if found is None:
        raise NotFound(f"{what} not found")
    return found


def stored_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Return an owner row's fields as a read would show them, from the values written."""
    return {k: str(getattr(v, "value", v)) if k == "status" else v for k, v in fields.items()}


def stored_step(step_name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Return a step as a read would show it, from the values a PUT wrote (every field)."""
    return {**stored_fields(values), "step_name": step_name}


def check_transition(entity: str, entity_id: str, current: str, new_status: str | None) -> None:
    """Raise 409 unless a run or task may move from its current status to the new one."""
    if new_status is None:
        return
    if not transition_allowed(current, str(new_status)):
        raise Conflict(
            f"{entity} {entity_id} is {current}; it cannot become {new_status}",
            code="invalid_transition",
        )


def implied_start(fields: dict[str, Any]) -> datetime:
    """Return when a new record started: `duration` before its end if it has one, else now."""
    completed_at = fields.get("completed_at")
    back = timedelta(seconds=fields.get("duration") or 0.0)
    return completed_at - back if completed_at else utcnow()


def new_record_defaults(fields: dict[str, Any]) -> None:
    """Fill the hardware, status and progress a new run or task was sent without."""
    fields.setdefault("hardware", ["cpu"])
    fields.setdefault("status", "completed" if fields.get("completed_at") else "initializing")
    fields.setdefault("progress", 1.0 if str(fields["status"]) == "completed" else 0.0)


def finish_fields(
    fields: dict[str, Any], started_at: datetime | None, completed_at: datetime | None = None
) -> None:
    """Close a record whose new status is terminal: end time, duration, full progress."""
    status = fields.get("status")
    if status is None or str(status) not in TERMINAL:
        return
    started = fields.get("started_at", started_at)
    if fields.get("completed_at", completed_at) is None:
        fields["completed_at"] = end_time(started)
    if fields.get("duration") is None:
        fields["duration"] = seconds(started, fields.get("completed_at", completed_at))
    if str(status) == "completed":
        fields.setdefault("progress", 1.0)


def metric_columns(metrics: Metrics, default_time: datetime | None = None) -> dict[str, list[Any]]:
    """Return metric points as the metric table's columns; points without a timestamp take
    `default_time` (or now)."""
    points = metrics if isinstance(metrics, MetricColumns) else MetricColumns.of(metrics)
    return points.stored(default_time or utcnow())


def batch_fields(
    counts: Mapping[str, int], timing: Mapping[str, Any], count_field: str
) -> dict[str, Any]:
    """Return a batch's status, member count and timing, derived from its members."""
    status = batch_status([status for status, n in counts.items() for _ in range(n)])
    completed_at = timing["completed_at"] if status in BATCH_DONE else None
    return {
        "status": status,
        count_field: int(timing["members"]),
        "started_at": timing["started_at"],
        "completed_at": completed_at,
        "duration": seconds(timing["started_at"], completed_at),
    }


def batch_rows(
    batches: Sequence[Any], counts: Mapping[str, Mapping[str, int]], fields: Sequence[str]
) -> list[dict[str, Any]]:
    """Return batches as rows of their fields, with their members counted by status."""
    out = []
    for batch in batches:
        by_status = counts.get(batch.batch_id, {})
        item = {k: getattr(batch, k) for k in fields}
        item["counts"] = {"total": sum(by_status.values()), "by_status": by_status}
        out.append(item)
    return out
