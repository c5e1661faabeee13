"""Generator trends: per bucket and per architecture, checked against the tasks posted."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

DB = "/api/generator/db"
NOW = datetime.now(UTC).replace(microsecond=0)


def tasks() -> list[dict[str, Any]]:
    """Return tasks over four days, two architectures, every terminal status, one running."""
    out = []
    plan = [
        (0, "encoder_only", "completed", 2.0),
        (0, "encoder_only", "error", 1.0),
        (0, "decoder_only", "completed", 4.0),
        (1, "decoder_only", "completed", 6.0),
        (1, "decoder_only", "cancelled", None),
        (3, "encoder_only", "completed", 8.0),
        (3, "encoder_only", "completed", 10.0),
        (3, "encoder_only", "running", None),
    ]
    for i, (days, arch, status, seconds) in enumerate(plan):
        started = NOW - timedelta(days=days, hours=1, minutes=i)
        doc: dict[str, Any] = {
            "task_id": f"g{i}",
            "model_name": "bert" if arch == "encoder_only" else "gpt2",
            "hardware": ["cpu"],
            "status": status,
            "started_at": started.isoformat(),
            "architecture": arch,
        }
        if seconds is not None:
            doc["completed_at"] = (started + timedelta(seconds=seconds)).isoformat()
        out.append(doc)
    return out


def expected(docs: list[dict[str, Any]]) -> dict[str, Any]:
    finished = [d for d in docs if d["status"] in ("completed", "error", "cancelled")]
    done = [d for d in docs if d["status"] == "completed"]
    durations = [
        (
            datetime.fromisoformat(d["completed_at"]) - datetime.fromisoformat(d["started_at"])
        ).total_seconds()
        for d in done
    ]
    return {
        "tasks": len(docs),
        "completed": len(done),
        "success_rate": len(done) / len(finished) if finished else None,
        "p50_duration": statistics.median(durations) if durations else None,
    }


def test_task_trends_per_day_and_architecture(client: TestClient) -> None:
    docs = tasks()
    for doc in docs:
        assert client.post(f"{DB}/tasks", json=doc).status_code == 201, doc
    response = client.get(f"{DB}/trends", params={"bucket": "day", "days": 10})
    assert response.status_code == 200, response.text
    answer = response.json()
    by_day: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_day.setdefault(d["started_at"][:10], []).append(d)
    assert [p["bucket"][:10] for p in answer["points"]] == sorted(by_day)
    for point in answer["points"]:
        want = expected(by_day[point["bucket"][:10]])
        assert {k: point[k] for k in want} == want
    archs = {a["architecture"]: a for a in answer["architectures"]}
    for arch in ("encoder_only", "decoder_only"):
        want = expected([d for d in docs if d["architecture"] == arch])
        assert {k: archs[arch][k] for k in want} == want
    only = client.get(f"{DB}/trends", params={"architecture": "decoder_only"}).json()
    assert sum(p["tasks"] for p in only["points"]) == 3
    capped = client.get(f"{DB}/trends", params={"bucket": "hour", "points": 2}).json()
    assert len(capped["points"]) <= 2
    assert client.get(f"{DB}/trends", params={"bucket": "year"}).status_code == 422
    assert client.get(f"{DB}/trends", params={"points": 1}).status_code == 422
    assert client.get(f"{DB}/trends", params={"extra": 1}).status_code == 422
