"""Black box: a real uvicorn serving the Test Suite database API, checked from outside only."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from app.core.statuses import batch_status
from tests.components.test_suite.support import (
    assert_stats_rows,
    expected_daily,
    expected_metric_stats,
    expected_stats,
    in_scope,
    instant,
    run_doc,
)
from tests.support import Server

pytestmark = pytest.mark.e2e

B = "/api/test/db"
MODELS = ["bert-base-uncased", "gpt2", "t5-small", "vit-base-patch16"]
DEVICES = ["cpu", "cuda", "rocm", "mps"]
STATUSES = ["completed"] * 6 + ["error", "error", "timeout", "cancelled", "running"]


def corpus(now: datetime) -> list[dict[str, Any]]:
    """Return 60 runs over four models, four devices, ten days, every status, four batches."""
    rng = random.Random(20260301)
    docs = []
    for i in range(60):
        status = rng.choice(STATUSES)
        hardware = rng.sample(DEVICES, rng.choice([1, 1, 1, 2, 3]))
        metrics = {d: {"latency_ms": round(rng.uniform(1, 50), 3)} for d in hardware}
        if rng.random() < 0.5:
            metrics[hardware[0]]["throughput_per_sec"] = round(rng.uniform(10, 900), 2)
        doc = run_doc(
            f"e2e-{i:03d}",
            model=MODELS[i % 4] if i % 7 else "gpt2",
            hardware=hardware,
            status=status,
            # Whole hours away from the day boundaries the windows are cut at.
            started=now
            - timedelta(
                days=rng.randrange(10),
                hours=rng.randint(1, 22),
                minutes=rng.randint(0, 59),
                seconds=i,  # no two runs start at the same instant
            ),
            seconds=round(rng.uniform(0.5, 900), 3),
            cases=(rng.randint(0, 20), rng.randint(0, 4), rng.randint(0, 3)),
            test_type=rng.choice(["basic", "comprehensive", "fault_tolerance"]),
            tags={"branch": rng.choice(["main", "dev"]), "ci": str(i % 3)},
            metrics=metrics,
            batch_id=f"nightly-{i % 3}" if i % 4 == 0 else None,
        )
        if rng.random() < 0.3:
            doc["metrics"] = [
                {
                    "name": "memory_mb",
                    "value": float(rng.randint(100, 4000)),
                    "unit": "MB",
                    "hardware": hardware[0],
                    "timestamp": (instant(doc["started_at"]) + timedelta(seconds=k)).isoformat(),
                }
                for k in range(3)
            ]
        doc["steps"] = [
            {"step_name": "setup", "status": "completed", "progress": 1.0},
            {
                "step_name": f"tests/test_{doc['model_name']}.py::test_forward[{hardware[0]}]",
                "status": "completed" if status == "completed" else "error",
                "progress": 1.0,
            },
        ]
        doc["artifacts"] = [
            {
                "artifact_type": "log",
                "artifact_path": f"/logs/{i}.log",
                "description": "pytest output",
            }
        ]
        docs.append(doc)
    return docs


def get_all(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Page through a list endpoint; check X-Total-Count against what came back."""
    rows: list[dict[str, Any]] = []
    total = None
    while True:
        response = client.get(path, params={**params, "limit": 25, "offset": len(rows)})
        assert response.status_code == 200, response.text
        total = int(response.headers["X-Total-Count"])
        page = response.json()
        rows.extend(page)
        if not page or len(rows) >= total:
            break
    assert len(rows) == total
    return rows


def snapshot(client: httpx.Client) -> dict[str, Any]:
    """Everything a user can read about the database, for before/after comparisons."""
    runs = get_all(client, f"{B}/runs")
    return {
        "runs": runs,
        "details": {r["run_id"]: client.get(f"{B}/run/{r['run_id']}").json() for r in runs},
        "batches": {
            b["batch_id"]: client.get(f"{B}/batch/{b['batch_id']}").json()
            for b in get_all(client, f"{B}/batches")
        },
        "models": client.get(f"{B}/models/stats").json(),
        "hardware": client.get(f"{B}/hardware/stats", params={"days": 30}).json(),
    }


def assert_same_snapshot(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Compare snapshots: records exactly, statistics up to float summation order."""
    for key in ("runs", "details", "batches"):
        assert got[key] == want[key], key
    for key in ("models", "hardware"):
        assert len(got[key]) == len(want[key]), key
        for a, b in zip(got[key], want[key], strict=True):
            assert a.keys() == b.keys()
            for field in a:
                if isinstance(b[field], float):
                    assert a[field] == pytest.approx(b[field], rel=1e-12), (key, field)
                else:
                    assert a[field] == b[field], (key, field)


def check_statistics(client: httpx.Client, docs: list[dict[str, Any]]) -> None:
    scopes: list[dict[str, Any]] = [
        {},
        {"days": 3},
        {"model_name": "gpt2"},
        {"hardware": "cuda"},
        {"test_type": "comprehensive", "days": 7},
    ]
    for scope in scopes:
        keep = lambda d, s=scope: in_scope(d, **s)  # noqa: E731
        models = client.get(f"{B}/models/stats", params=scope).json()
        assert_stats_rows(models, expected_stats(docs, "model", keep), "model_name")
        devices = client.get(f"{B}/hardware/stats", params=scope).json()
        want = expected_stats(docs, "hardware", keep)
        if "hardware" in scope:
            want = {k: v for k, v in want.items() if k == scope["hardware"]}
        assert_stats_rows(devices, want, "hardware")
    reports: list[dict[str, Any]] = [{"days": 30}, {"days": 4, "model_name": "gpt2"}, {"days": 1}]
    for params in reports:
        report = client.get(f"{B}/performance", params=params).json()
        scoped = [
            d for d in docs if in_scope(d, days=params["days"], model_name=params.get("model_name"))
        ]
        assert_stats_rows(report["model_stats"], expected_stats(scoped, "model"), "model_name")
        assert_stats_rows(report["hardware_stats"], expected_stats(scoped, "hardware"), "hardware")
        daily = {r["day"]: r for r in report["daily_stats"]}
        for day, want_day in expected_daily(scoped).items():
            for field, value in want_day.items():
                assert daily[day][field] == pytest.approx(value), (params, day, field)
        assert len(daily) == len(expected_daily(scoped))
        newest = sorted(scoped, key=lambda d: instant(d["started_at"]), reverse=True)
        assert [r["run_id"] for r in report["latest_runs"]] == [d["run_id"] for d in newest[:20]]
        series = {
            (r["model_name"], r["hardware"], r["metric_name"], r["metric_unit"]): r
            for r in report["performance_metrics"]
        }
        want_series = expected_metric_stats(scoped)
        assert set(series) == set(want_series)
        for key, want in want_series.items():
            for field, value in want.items():
                assert series[key][field] == pytest.approx(value), (params, key, field)


def test_record_query_export_delete_import_against_uvicorn(server: Server) -> None:
    now = datetime.now(UTC)
    docs = corpus(now)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for doc in docs:
            response = client.post(f"{B}/runs", json=doc)
            assert response.status_code == 201, response.text
        # A hand-made batch, one member added afterwards.
        created = client.post(
            f"{B}/batches",
            json={
                "batch_id": "manual",
                "description": "picked by hand",
                "run_ids": [d["run_id"] for d in docs[:5]],
            },
        )
        assert created.status_code == 201
        assert client.put(f"{B}/batch/manual/runs/e2e-059").status_code == 200
        members: dict[str, list[str]] = defaultdict(list)
        for doc in docs:
            if "batch_id" in doc:
                members[doc["batch_id"]].append(doc["run_id"])
        members["manual"] = [d["run_id"] for d in docs[:5]] + ["e2e-059"]
        status_of = {d["run_id"]: d["status"] for d in docs}

        runs = get_all(client, f"{B}/runs")
        assert [r["run_id"] for r in runs] == [
            d["run_id"]
            for d in sorted(
                docs,
                key=lambda d: instant(d["started_at"]),
                reverse=True,
            )
        ]
        cuda = get_all(client, f"{B}/runs", hardware="cuda", status=["completed", "error"])
        assert {r["run_id"] for r in cuda} == {
            d["run_id"]
            for d in docs
            if "cuda" in d["hardware"] and d["status"] in ("completed", "error")
        }
        for batch_id, run_ids in members.items():
            batch = client.get(f"{B}/batch/{batch_id}").json()
            assert batch["status"] == batch_status([status_of[r] for r in run_ids]), batch_id
            assert sorted(r["run_id"] for r in batch["runs"]) == sorted(run_ids)
            assert batch["counts"]["total"] == len(run_ids) == batch["run_count"]
        check_statistics(client, docs)

        # Export, through the file API and the download; both hold the same tables.
        written = client.post(f"{B}/export", json={"filename": "everything.json"}).json()
        exported = json.loads(Path(written["path"]).read_text())
        assert Path(written["path"]).parent == (server.folder / "exports").resolve()
        assert exported["counts"]["test_runs"] == 60
        assert exported["counts"]["test_run_batch"] == sum(len(m) for m in members.values())
        downloaded = client.get(f"{B}/export", params={"format": "json"}).json()
        assert downloaded["tables"] == exported["tables"]
        before = snapshot(client)

        # Delete everything: batches with their runs, then the runs left.
        for batch_id in members:
            response = client.delete(f"{B}/batch/{batch_id}", params={"delete_runs": "true"})
            assert response.status_code in (200, 404)
        for run in get_all(client, f"{B}/runs"):
            assert client.delete(f"{B}/run/{run['run_id']}").status_code == 200
        assert get_all(client, f"{B}/runs") == [] and get_all(client, f"{B}/batches") == []
        assert client.get(f"{B}/models/stats").json() == []
        empty = client.post(f"{B}/export", json={"filename": "empty.json"}).json()
        assert set(empty["rows"].values()) == {0}

        # Import: everything is back, read the same way, exported the same way.
        response = client.post(f"{B}/import", json=exported)
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == exported["counts"]
        assert_same_snapshot(snapshot(client), before)
        check_statistics(client, docs)
        again = client.post(f"{B}/export", json={"filename": "again.json"}).json()
        assert json.loads(Path(again["path"]).read_text())["tables"] == exported["tables"]
        assert client.post(f"{B}/import", json=exported).status_code == 200
        assert_same_snapshot(snapshot(client), before)


def test_step_names_are_decoded_once_by_uvicorn(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post(f"{B}/runs", json={"run_id": "s", "model_name": "m", "status": "running"})
        names = ["%41 literally", "tests/a b.py::test[x/y]", "ünï ? # &"]
        for step in names:
            response = client.put(
                f"{B}/run/s/steps/{quote(step, safe='')}", json={"status": "running"}
            )
            assert response.status_code == 200, response.text
            assert response.json()["step_name"] == step
        assert [s["step_name"] for s in client.get(f"{B}/run/s").json()["steps"]] == names
        assert client.put(f"{B}/run/s/steps/", json={}).status_code in (404, 405, 422)


def test_nothing_escapes_the_export_folder(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name in ("../escape.json", "/tmp/escape.json", "sub/escape.json"):
            response = client.post(f"{B}/export", json={"filename": name})
            assert response.status_code == 400, name
        assert not (server.folder / "escape.json").exists()
        assert client.post(f"{B}/export", json={"filename": "ok.json"}).status_code == 200
        assert client.post(f"{B}/export", json={"filename": "ok.json"}).status_code == 409
        assert sorted(p.name for p in (server.folder / "exports").iterdir()) == ["ok.json"]
