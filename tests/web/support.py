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
# A third model with two weeks of history: a latency regression, a flaky and a newly failing test.
HISTORY_MODEL = "distilgpt2"
HISTORY_DAYS = (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13)  # recent window 0-6 days, baseline 8-13
FLAKY_TEST = "test_generate[cpu]"
FLAKY_FAILS = (1, 4, 9, 12)
NEW_FAILURE = "test_tokenize[cpu]"
NEW_FAILURE_DAYS = (0, 1)
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


def history_document(day: int, now: datetime) -> dict[str, Any]:
    """Return one run of HISTORY_MODEL on cpu, `day` days ago (latency doubles in the last week)."""
    start = now - timedelta(days=day, hours=2)
    details = []
    for name in ("test_load[cpu]", FLAKY_TEST, NEW_FAILURE, "test_save[cpu]"):
        bad = (name == FLAKY_TEST and day in FLAKY_FAILS) or (
            name == NEW_FAILURE and day in NEW_FAILURE_DAYS
        )
        details.append(
            {
                "name": name,
                "status": "failed" if bad else "passed",
                "duration_ms": 50.0 + day + (30.0 if bad else 0.0),
                "hardware": "cpu",
                "error": f"AssertionError: {name} failed on day {day}" if bad else None,
            }
        )
    latency = (20.0 if day < 7 else 10.0) + (day % 3) * 0.2
    return {
        "run_id": f"{HISTORY_MODEL}-d{day}",
        "model_name": HISTORY_MODEL,
        "hardware": ["cpu"],
        "test_type": "comprehensive",
        "status": "completed",
        "started_at": _ts(start),
        "completed_at": _ts(start + timedelta(seconds=30)),
        "results": {"test_details": details},
        "metrics": [
            {
                "name": "latency_ms",
                "value": latency,
                "unit": "ms",
                "hardware": "cpu",
                "timestamp": _ts(start + timedelta(seconds=10)),
            }
        ],
    }


def seed(http: httpx.Client, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Record runs of two models over several days, a batch, a run in progress and a history."""
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
    for day in HISTORY_DAYS:
        doc = history_document(day, now)
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
