"""Dashboard test data, recorded through the public recording API (no database shortcuts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

MODELS = ("bert-base-uncased", "google/vit-base-patch16-224")
DEVICES = ("cpu", "cuda")
DAYS = 6
BATCH = "nightly-1"
LIVE_RUN = "live-run"
METRICS = (("latency_ms", "ms"), ("throughput_items_per_sec", "items/s"), ("memory_mb", "MB"))


def _ts(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def run_document(model: str, day: int, now: datetime) -> dict[str, Any]:
    """Return one completed run of a model on both devices, `day` days ago."""
    start = now - timedelta(days=day, hours=1)
    failing = day == 0 and model == MODELS[0]
    details = []
    for i, name in enumerate(("test_load_model", "test_basic_inference", "test_batch_inference")):
        for device in DEVICES:
            bad = failing and device == "cuda" and i == 2
            details.append(
                {
                    "name": f"{name}[{device}]",
                    "status": "failed" if bad else "passed",
                    "duration_ms": 100.0 + 10 * i + day,
                    "hardware": device,
                    "error": "AssertionError: outputs differ\n  expected 1.0\n  got 0.5"
                    if bad
                    else None,
                }
            )
    metrics = [
        {
            "name": name,
            "value": (10.0 + day) * (2 if device == "cpu" else 1) * (k + 1),
            "unit": unit,
            "hardware": device,
            "timestamp": _ts(start + timedelta(minutes=1)),
        }
        for k, (name, unit) in enumerate(METRICS)
        for device in DEVICES
    ]
    steps = [
        {
            "step_name": step,
            "status": "completed",
            "progress": 1.0,
            "started_at": _ts(start + timedelta(seconds=20 * k)),
            "completed_at": _ts(start + timedelta(seconds=20 * k + 15)),
        }
        for k, step in enumerate(("load", "inference", "cleanup"))
    ]
    return {
        "run_id": f"{model.replace('/', '_')}-d{day}",
        "model_name": model,
        "hardware": list(DEVICES),
        "test_type": "comprehensive",
        "status": "completed",
        "started_at": _ts(start),
        "completed_at": _ts(start + timedelta(seconds=60 + 5 * day)),
        "results": {"test_details": details},
        "steps": steps,
        "metrics": metrics,
        "artifacts": [{"artifact_type": "log", "artifact_path": "pytest.log"}],
        "batch_id": BATCH if day == 0 else None,
    }


def seed(http: httpx.Client, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Record runs of two models over several days, a batch and one run still in progress."""
    now = datetime.now(UTC)
    headers = headers or {}
    created = http.post(
        "/api/test/db/batches", json={"batch_id": BATCH, "description": "nightly"}, headers=headers
    )
    assert created.status_code in (200, 201), created.text
    run_ids = []
    for model in MODELS:
        for day in range(DAYS):
            doc = run_document(model, day, now)
            if doc["batch_id"] is None:
                del doc["batch_id"]
            answer = http.post("/api/test/db/runs", json=doc, headers=headers)
            assert answer.status_code in (200, 201), answer.text
            run_ids.append(doc["run_id"])
    live = {
        "run_id": LIVE_RUN,
        "model_name": MODELS[0],
        "hardware": ["cpu"],
        "status": "running",
        "progress": 0.1,
        "current_step": "test_load_model @ cpu",
        "started_at": _ts(now - timedelta(minutes=1)),
    }
    answer = http.post("/api/test/db/runs", json=live, headers=headers)
    assert answer.status_code in (200, 201), answer.text
    return {"run_ids": run_ids, "failing_run": f"{MODELS[0]}-d0"}
