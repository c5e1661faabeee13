"""Black box: a real uvicorn process records, reports, exports, forgets and re-imports tasks."""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support import Server

pytestmark = pytest.mark.e2e

DB = "/api/generator/db"
MODELS = ("bert-base", "gpt2", "t5-small", "vit-base")
DEVICES = ("cpu", "cuda", "mps", "rocm")
STATUSES = ("completed", "completed", "completed", "error", "cancelled", "running", "queued")


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Return the continuous (linearly interpolated) percentile of the values."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Planned:
    """One task as the test records it, and as the test expects it to be counted."""

    task_id: str
    model: str
    hardware: list[str]
    status: str
    started: datetime
    duration: float | None
    batch: str | None
    metrics: list[tuple[str, float, str, str | None]] = field(default_factory=list)


def plan(now: datetime) -> list[Planned]:
    rng = random.Random(20261127)
    tasks = []
    for i in range(40):
        status = STATUSES[i % len(STATUSES)]
        terminal = status in {"completed", "error", "cancelled"}
        hardware = rng.sample(DEVICES, rng.choice([1, 1, 2]))
        metrics = [
            (name, round(rng.uniform(1, 500), 3), unit, rng.choice([*hardware, None]))
            for name, unit in (("render_ms", "ms"), ("file_kb", "KB"))
            for _ in range(rng.randint(0, 3))
        ]
        tasks.append(
            Planned(
                task_id=f"bb-{i:02d}",
                model=MODELS[i % len(MODELS)],
                hardware=hardware,
                status=status,
                # Distinct times, minutes away from any window boundary of whole days.
                started=now - timedelta(hours=rng.choice(range(1, 45 * 24, 7)) + 0.5, minutes=i),
                duration=round(rng.uniform(0.5, 120), 3) if terminal else None,
                batch=("nightly", "weekly", None)[i % 3],
                metrics=metrics,
            )
        )
    return tasks


def record(client: httpx.Client, task: Planned, lifecycle: bool) -> None:
    """Record a task as one document, or step by step as a live generator would."""
    started = task.started.isoformat()
    completed = (
        (task.started + timedelta(seconds=task.duration)).isoformat()
        if task.duration is not None
        else None
    )
    points = [
        {"name": n, "value": v, "unit": u, "hardware": h, "timestamp": started}
        for n, v, u, h in task.metrics
    ]
    if not lifecycle:
        doc: dict[str, Any] = {
            "task_id": task.task_id,
            "model_name": task.model,
            "hardware": task.hardware,
            "status": task.status,
            "started_at": started,
            "completed_at": completed,
            "architecture": "encoder_only" if "bert" in task.model else "other",
            "template_context": {"model": task.model, "devices": task.hardware},
            "steps": [{"step_name": "render/template", "status": "completed"}],
            "metrics": points,
            "tags": {"source": "blackbox", "index": task.task_id[-2:]},
        }
        if task.batch:
            doc["batch_id"] = task.batch
        ok(client.post(f"{DB}/tasks", json=doc), 201)
        return
    first = {
        "task_id": task.task_id,
        "model_name": task.model,
        "hardware": task.hardware,
        "status": "queued",
        "started_at": started,
    }
    ok(client.post(f"{DB}/tasks", json=first), 201)
    if task.status != "queued":
        ok(client.patch(f"{DB}/task/{task.task_id}", json={"status": "running", "progress": 0.2}))
    ok(client.put(f"{DB}/task/{task.task_id}/steps/render/template", json={"status": "completed"}))
    ok(client.post(f"{DB}/task/{task.task_id}/metrics", json=points), 201)
    ok(client.put(f"{DB}/task/{task.task_id}/tags", json={"source": "blackbox"}))
    ok(client.put(f"{DB}/task/{task.task_id}/tags?merge=true", json={"index": task.task_id[-2:]}))
    if completed is not None:
        body = {"status": task.status, "completed_at": completed, "output_file": "out.py"}
        ok(client.post(f"{DB}/task/{task.task_id}/complete", json=body))
    if task.batch:
        ok(client.put(f"{DB}/batch/{task.batch}/tasks/{task.task_id}"))


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.request.url, response.text)
    return response.json()


def counts(tasks: list[Planned]) -> dict[str, Any]:
    durations = [t.duration for t in tasks if t.status == "completed" and t.duration is not None]
    return {
        "total_tasks": len(tasks),
        "completed_tasks": sum(t.status == "completed" for t in tasks),
        "failed_tasks": sum(t.status == "error" for t in tasks),
        "running_tasks": sum(t.status == "running" for t in tasks),
        "cancelled_tasks": sum(t.status == "cancelled" for t in tasks),
        "avg_duration": sum(durations) / len(durations) if durations else None,
        "min_duration": min(durations, default=None),
        "max_duration": max(durations, default=None),
        "p50_duration": percentile(durations, 0.5),
        "p95_duration": percentile(durations, 0.95),
        "latest_task": max(t.started for t in tasks),
    }


def grouped(
    tasks: list[Planned], key: Callable[[Planned], Iterable[str]]
) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Planned]] = defaultdict(list)
    for task in tasks:
        for name in key(task):
            groups[name].append(task)
    return {name: counts(members) for name, members in groups.items()}


def check_rows(rows: list[dict[str, Any]], name: str, want: dict[str, dict[str, Any]]) -> None:
    assert sorted(r[name] for r in rows) == sorted(want)
    assert [r["total_tasks"] for r in rows] == sorted(
        (r["total_tasks"] for r in rows), reverse=True
    )
    for row in rows:
        for key, value in want[row[name]].items():
            if key == "latest_task":
                assert at(row[key]) == value, (row[name], key)
            elif isinstance(value, float):
                assert row[key] == pytest.approx(value), (row[name], key)
            else:
                assert row[key] == value, (row[name], key)


def in_window(task: Planned, now: datetime, days: int | None) -> bool:
    return days is None or task.started >= now - timedelta(days=days)


def check_reports(client: httpx.Client, tasks: list[Planned], now: datetime) -> None:
    """Compare models/stats, hardware/stats and performance with a Python computation."""
    for days, model, device in [
        (None, None, None),
        (7, None, None),
        (30, "gpt2", None),
        (None, None, "cuda"),
    ]:
        params = {k: v for k, v in {"days": days, "model_name": model, "hardware": device}.items()}
        params = {k: v for k, v in params.items() if v is not None}
        scope = [
            t
            for t in tasks
            if in_window(t, now, days)
            and model in (None, t.model)
            and device in (None, *t.hardware)
        ]
        check_rows(
            ok(client.get(f"{DB}/models/stats", params=params)),
            "model_name",
            grouped(scope, lambda t: [t.model]),
        )
        check_rows(
            ok(client.get(f"{DB}/hardware/stats", params=params)),
            "hardware",
            grouped(scope, lambda t, d=device: [h for h in t.hardware if d in (None, h)]),
        )
    for days, model in [(30, None), (7, "bert-base"), (365, None)]:
        params: dict[str, Any] = {"days": days}
        if model:
            params["model_name"] = model
        report = ok(client.get(f"{DB}/performance", params=params))
        scope = [t for t in tasks if in_window(t, now, days) and model in (None, t.model)]
        check_rows(report["model_stats"], "model_name", grouped(scope, lambda t: [t.model]))
        check_rows(report["hardware_stats"], "hardware", grouped(scope, lambda t: t.hardware))
        by_day: dict[str, list[Planned]] = defaultdict(list)
        for task in scope:
            by_day[task.started.astimezone(UTC).date().isoformat()].append(task)
        assert [d["day"] for d in report["daily_stats"]] == sorted(by_day)
        for row in report["daily_stats"]:
            members = by_day[row["day"]]
            with_duration = [t.duration for t in members if t.duration is not None]
            assert row["total_tasks"] == len(members)
            assert row["completed_tasks"] == sum(t.status == "completed" for t in members)
            assert row["failed_tasks"] == sum(t.status == "error" for t in members)
            want_avg = sum(with_duration) / len(with_duration) if with_duration else None
            assert row["avg_duration"] == pytest.approx(want_avg)
        newest = sorted(scope, key=lambda t: t.started, reverse=True)[:20]
        assert [t["task_id"] for t in report["latest_tasks"]] == [t.task_id for t in newest]
        series: dict[tuple[Any, ...], list[float]] = defaultdict(list)
        for task in scope:
            for name, value, unit, hw in task.metrics:
                series[(task.model, hw, name, unit)].append(value)
        got = {
            (m["model_name"], m["hardware"], m["metric_name"], m["metric_unit"]): m
            for m in report["performance_metrics"]
        }
        assert len(got) == len(report["performance_metrics"]) == len(series)
        for key, values in series.items():
            row = got[key]
            assert row["count"] == len(values)
            assert row["avg"] == pytest.approx(sum(values) / len(values))
            assert (row["min"], row["max"]) == (min(values), max(values))
            assert row["p50"] == pytest.approx(percentile(values, 0.5))
            assert row["p95"] == pytest.approx(percentile(values, 0.95))


def expected_batch_status(members: list[Planned]) -> str:
    statuses = [t.status for t in members]
    terminal = {"completed", "error", "cancelled"}
    if not all(s in terminal for s in statuses):
        return "running"
    if all(s == "completed" for s in statuses):
        return "completed"
    if all(s == "cancelled" for s in statuses):
        return "cancelled"
    return "partial" if "completed" in statuses else "error"


def snapshot(client: httpx.Client, tasks: list[Planned]) -> dict[str, Any]:
    return {
        "tasks": {t.task_id: ok(client.get(f"{DB}/task/{t.task_id}")) for t in tasks},
        "batches": {b: ok(client.get(f"{DB}/batch/{b}")) for b in ("nightly", "weekly")},
    }


def test_generator_database_api_end_to_end(server: Server) -> None:
    now = datetime.now(UTC)
    tasks = plan(now)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        ok(client.post(f"{DB}/batches", json={"batch_id": "nightly", "description": "n"}), 201)
        ok(client.post(f"{DB}/batches", json={"batch_id": "weekly", "description": "w"}), 201)
        for i, task in enumerate(tasks):
            record(client, task, lifecycle=i % 2 == 1)

        listed = client.get(f"{DB}/tasks", params={"limit": 1000})
        assert listed.headers["X-Total-Count"] == "40"
        assert [t["task_id"] for t in listed.json()] == [
            t.task_id for t in sorted(tasks, key=lambda t: t.started, reverse=True)
        ]
        for name in ("nightly", "weekly"):
            members = [t for t in tasks if t.batch == name]
            batch = ok(client.get(f"{DB}/batch/{name}"))
            assert batch["task_count"] == len(members)
            assert batch["status"] == expected_batch_status(members)
            assert {t["task_id"] for t in batch["tasks"]} == {t.task_id for t in members}
        check_reports(client, tasks, now)
        hits = ok(client.post(f"{DB}/search", json={"query": "BLACKBOX", "limit": 1000}))
        assert len(hits) == 40

        before = snapshot(client, tasks)
        result = ok(client.post(f"{DB}/export", json={"filename": "all.json"}))
        assert result["rows"]["generator_tasks"] == 40
        document = json.loads((server.folder / "exports" / "all.json").read_text())

        for task in tasks:
            ok(client.delete(f"{DB}/task/{task.task_id}"))
        for name in ("nightly", "weekly"):
            ok(client.delete(f"{DB}/batch/{name}"))
        assert client.get(f"{DB}/tasks").headers["X-Total-Count"] == "0"
        assert ok(client.get(f"{DB}/batches")) == []
        assert ok(client.get(f"{DB}/models/stats")) == []
        gone = client.get(f"{DB}/task/{tasks[0].task_id}")
        assert gone.status_code == 404 and "detail" in gone.json()

        imported = ok(client.post(f"{DB}/import", json=document))
        assert imported["rows"] == document["counts"]
        after = snapshot(client, tasks)
        for task_id, detail in before["tasks"].items():
            assert after["tasks"][task_id] == detail, task_id
        assert after == before
        # Statistics are equal up to the order DuckDB sums floating-point numbers in.
        check_reports(client, tasks, now)
        again = ok(client.post(f"{DB}/export", json={"filename": "again.json"}))
        assert again["rows"] == result["rows"]
        second = json.loads((server.folder / "exports" / "again.json").read_text())
        assert second["tables"] == document["tables"]
