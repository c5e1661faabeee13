"""Statuses of runs, tasks and batches, and the rules for moving between them."""

from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    """Lifecycle of a test run; the last four are terminal."""

    initializing = "initializing"
    queued = "queued"
    running = "running"
    completed = "completed"
    error = "error"
    timeout = "timeout"
    cancelled = "cancelled"


class TaskStatus(enum.StrEnum):
    """Lifecycle of a generator task; the last three are terminal."""

    initializing = "initializing"
    queued = "queued"
    running = "running"
    completed = "completed"
    error = "error"
    cancelled = "cancelled"


class BatchStatus(enum.StrEnum):
    """A batch's status, derived from its members."""

    initializing = "initializing"
    running = "running"
    completed = "completed"
    partial = "partial"
    error = "error"
    cancelled = "cancelled"


class StepStatus(enum.StrEnum):
    """Status of one step of a run or task."""

    pending = "pending"
    running = "running"
    completed = "completed"
    error = "error"
    skipped = "skipped"
    cancelled = "cancelled"
    timeout = "timeout"
    # A device of the run that was not there when its pass was due (never run, never passed).
    unavailable = "unavailable"


TERMINAL = frozenset({"completed", "error", "timeout", "cancelled"})
# Not yet ended: what a stopped server leaves behind and its worker pool fails at start-up.
ACTIVE = frozenset({"initializing", "queued", "running"})


def transition_allowed(current: str, new: str) -> bool:
    """Return whether a run or task may move from `current` to `new`."""
    if current == new:
        return True
    if current in TERMINAL:
        return False
    order = ("initializing", "queued", "running")
    if new in order:
        return order.index(new) >= order.index(current)
    return True


def batch_status(member_statuses: list[str]) -> str:
    """Derive a batch's status from its members' statuses."""
    if not member_statuses:
        return BatchStatus.initializing.value
    if not all(s in TERMINAL for s in member_statuses):
        started = any(s != "initializing" for s in member_statuses)
        return BatchStatus.running.value if started else BatchStatus.initializing.value
    if all(s == "completed" for s in member_statuses):
        return BatchStatus.completed.value
    if all(s == "cancelled" for s in member_statuses):
        return BatchStatus.cancelled.value
    if any(s == "completed" for s in member_statuses):
        return BatchStatus.partial.value
    return BatchStatus.error.value
