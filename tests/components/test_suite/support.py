"""Helpers the Test Suite tests share: documents, comparisons, independent statistics, JUnit."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from app.components.test_suite.models import Base, RunLease
from app.core.db import Database
from app.main import TrackingApp

B = "/api/test/db"
# Every table of a run's data: the leases are the runners' bookkeeping (exports leave them out).
TABLES = sorted(set(Base.metadata.tables) - {RunLease.__tablename__})
TIME_KEYS = ("started_at", "completed_at", "created_at", "timestamp", "latest_run")


def iso(moment: datetime) -> str:
    """Return an ISO 8601 text for a timestamp."""
    return moment.isoformat()


def instant(value: Any) -> datetime:
    """Parse an ISO 8601 timestamp as the API writes it (trailing Z allowed)."""
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def same_instant(a: Any, b: Any) -> bool:
    """Return whether two timestamps (or two nulls) are the same instant."""
    if a is None or b is None:
        return a is None and b is None
    return instant(a) == instant(b)


def _is_instant(value: Any) -> bool:
    """Return whether a sent value is a timestamp (or null)."""
    if value is None:
        return True
    try:
        instant(value)
    except (TypeError, ValueError):
        return False
    return True


def assert_matches(sent: Any, got: Any, where: str = "$") -> None:
    """Assert `got` holds everything `sent` holds (timestamps as instants, extra keys allowed)."""
    if isinstance(sent, dict):
        assert isinstance(got, dict), f"{where}: expected an object, got {got!r}"
        for key, value in sent.items():
            assert key in got, f"{where}.{key} missing from {sorted(got)}"
            # Free-form data (metrics, result_data) may hold any key ending in `_at`: a value
            # that is not a timestamp is compared as it is.
            if (key in TIME_KEYS or key.endswith("_at")) and _is_instant(value):
                assert same_instant(got[key], value), f"{where}.{key}: {got[key]} != {value}"
            else:
                assert_matches(value, got[key], f"{where}.{key}")
    elif isinstance(sent, list):
        assert isinstance(got, list), f"{where}: expected a list, got {got!r}"
        assert len(got) == len(sent), f"{where}: {len(got)} items, sent {len(sent)}"
        for i, (a, b) in enumerate(zip(sent, got, strict=True)):
            assert_matches(a, b, f"{where}[{i}]")
    elif isinstance(sent, float) and not isinstance(got, bool):
        assert got == sent, f"{where}: {got!r} != {sent!r}"
    else:
        assert got == sent and type(got) is type(sent), f"{where}: {got!r} != {sent!r}"


def table_counts_in(session: Session) -> dict[str, int]:
    """Count the rows of every Test Suite table."""
    return {
        name: int(session.scalar(select(func.count()).select_from(Base.metadata.tables[name])) or 0)
        for name in TABLES
    }


def database(client: Any) -> Database:
    """Return the Test Suite database of the app a TestClient serves."""
    app = client.app
    assert isinstance(app, TrackingApp)
    return app.ctx.database("test_suite")


def app_table_counts(client: Any) -> dict[str, int]:
    """Count rows through the running app's own engine."""
    with database(client).reading() as session:
        return table_counts_in(session)


def file_table_counts(url: str) -> dict[str, int]:
    """Count rows with a fresh engine on a database (URL) no server holds."""
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            return table_counts_in(session)
    finally:
        engine.dispose()


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Return the continuous (linearly interpolated) percentile, as percentile_cont defines it."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- documents -------------------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)


def run_doc(
    run_id: str,
    *,
    model: str = "bert-base-uncased",
    hardware: list[str] | None = None,
    status: str = "completed",
    started: datetime | None = None,
    seconds: float | None = 30.0,
    cases: tuple[int, int, int] = (3, 1, 1),
    test_type: str = "basic",
    tags: dict[str, str] | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    batch_id: str | None = None,
) -> dict[str, Any]:
    """Return a recording document with per-test details giving the wanted counts."""
    started = started or NOW - timedelta(hours=1)
    outcomes = ["passed"] * cases[0] + ["failed"] * cases[1] + ["skipped"] * cases[2]
    doc: dict[str, Any] = {
        "run_id": run_id,
        "model_name": model,
        "hardware": hardware or ["cpu"],
        "test_type": test_type,
        "status": status,
        "started_at": iso(started),
        "results": {
            "test_details": [
                {"name": f"test_{i}", "status": s, "duration_ms": 10.0 * i, "error": None}
                for i, s in enumerate(outcomes)
            ],
        },
        "tags": tags or {},
    }
    if seconds is not None and status not in ("initializing", "queued", "running"):
        doc["completed_at"] = iso(started + timedelta(seconds=seconds))
    if metrics is not None:
        doc["results"]["performance_metrics"] = metrics
    if batch_id is not None:
        doc["batch_id"] = batch_id
    return doc


# --- independent statistics ------------------------------------------------------------------


def _counts(doc: dict[str, Any]) -> tuple[int, int, int]:
    details = (doc.get("results") or {}).get("test_details") or []
    statuses = [d["status"] for d in details]
    return (
        sum(s in ("passed", "xpassed") for s in statuses),
        sum(s in ("failed", "error") for s in statuses),
        sum(s in ("skipped", "xfailed") for s in statuses),
    )


def _duration(doc: dict[str, Any]) -> float | None:
    if doc.get("completed_at") is None:
        return None
    return (instant(doc["completed_at"]) - instant(doc["started_at"])).total_seconds()


def _row(docs: list[dict[str, Any]]) -> dict[str, Any]:
    passed = sum(_counts(d)[0] for d in docs)
    failed = sum(_counts(d)[1] for d in docs)
    durations = [x for d in docs if d["status"] == "completed" and (x := _duration(d)) is not None]
    return {
        "total_runs": len(docs),
        "completed_runs": sum(d["status"] == "completed" for d in docs),
        "failed_runs": sum(d["status"] == "error" for d in docs),
        "timeout_runs": sum(d["status"] == "timeout" for d in docs),
        "cancelled_runs": sum(d["status"] == "cancelled" for d in docs),
        "tests_passed": passed,
        "tests_failed": failed,
        "tests_skipped": sum(_counts(d)[2] for d in docs),
        "pass_rate": passed / (passed + failed) if passed + failed else None,
        "avg_duration": sum(durations) / len(durations) if durations else None,
        "min_duration": min(durations) if durations else None,
        "max_duration": max(durations) if durations else None,
        "p50_duration": percentile(durations, 0.5),
        "p95_duration": percentile(durations, 0.95),
        "latest_run": max(instant(d["started_at"]) for d in docs),
    }


def in_scope(
    doc: dict[str, Any],
    *,
    days: int | None = None,
    model_name: str | None = None,
    hardware: str | None = None,
    test_type: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Return whether a run document falls inside a statistics scope."""
    if days is not None:
        start = (now or datetime.now(UTC)) - timedelta(days=days)
        if instant(doc["started_at"]) < start:
            return False
    if model_name is not None and doc["model_name"] != model_name:
        return False
    if hardware is not None and hardware not in doc["hardware"]:
        return False
    return test_type is None or doc.get("test_type") == test_type


def expected_stats(
    docs: list[dict[str, Any]], by: str, keep: Callable[[dict[str, Any]], bool] = lambda d: True
) -> dict[str, dict[str, Any]]:
    """Return model or device statistics computed in Python, keyed by model or device."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        if not keep(doc):
            continue
        keys = doc["hardware"] if by == "hardware" else [doc["model_name"]]
        for key in keys:
            groups[key].append(doc)
    return {key: _row(members) for key, members in groups.items()}


def expected_daily(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return one row per UTC day of started_at (avg_duration over completed runs)."""
    days: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        days[instant(doc["started_at"]).date().isoformat()].append(doc)
    out = {}
    for day, members in days.items():
        durations = [
            x for d in members if d["status"] == "completed" and (x := _duration(d)) is not None
        ]
        out[day] = {
            "total_runs": len(members),
            "completed_runs": sum(d["status"] == "completed" for d in members),
            "failed_runs": sum(d["status"] == "error" for d in members),
            "avg_duration": sum(durations) / len(durations) if durations else None,
        }
    return out


def expected_metric_stats(docs: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Return per (model, device, metric, unit) series statistics of performance_metrics."""
    from app.core.naming import metric_unit

    series: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for doc in docs:
        perf = (doc.get("results") or {}).get("performance_metrics") or {}
        for device, values in perf.items():
            for name, value in values.items():
                series[(doc["model_name"], device, name, metric_unit(name))].append(value)
        for m in doc.get("metrics") or []:
            key = (doc["model_name"], m.get("hardware"), m["name"], m.get("unit", ""))
            series[key].append(m["value"])
    return {
        key: {
            "count": len(values),
            "avg": sum(values) / len(values),
            "min": min(values),
            "max": max(values),
            "p50": percentile(values, 0.5),
            "p95": percentile(values, 0.95),
        }
        for key, values in series.items()
    }


def assert_stats_rows(rows: list[dict[str, Any]], expected: dict[str, Any], key: str) -> None:
    """Compare API statistics rows with independently computed ones (most runs first)."""
    totals = [r["total_runs"] for r in rows]
    assert totals == sorted(totals, reverse=True), f"rows not sorted by total_runs: {totals}"
    got = {r[key]: r for r in rows}
    assert set(got) == set(expected), f"{key}s: {sorted(got)} != {sorted(expected)}"
    for name, want in expected.items():
        for field, value in want.items():
            actual = got[name][field]
            if field == "latest_run":
                assert instant(actual) == value, f"{name}.{field}: {actual} != {value}"
            elif value is None:
                assert actual is None, f"{name}.{field}: {actual} != None"
            else:
                assert actual == pytest.approx(value, rel=1e-9, abs=1e-9), (
                    f"{name}.{field}: {actual} != {value}"
                )


def parse_junit(path: Path | str) -> dict[str, int]:
    """Return {tests, failures, errors, skipped, passed} summed over a JUnit XML report."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, "0"))
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "passed": passed}
