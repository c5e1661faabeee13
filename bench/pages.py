"""6. Dashboard pages: each page's HTML with its data (rendered inline) over HTTP, ≤ 1 s."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from bench.dataset import model_names, run_id
from bench.queries import HISTORY_TEST
from bench.scales import Scale
from bench.stats import summary_ms

PAGE_LIMIT_MS = 1000.0
BENCH_TASK = "bench-task-0001"
GENERATOR_TASKS = 50  # a few generator tasks, so the generator pages have rows to show


@dataclass(frozen=True)
class Page:
    """A dashboard page the bench times: its name and its URL (filters in the query string)."""

    name: str
    path: str


def pages(scale: Scale) -> list[Page]:
    """Return every dashboard page, on ids the data set holds."""
    model = model_names(scale)[0]
    middle = run_id(scale.runs // 2)
    return [
        Page("overview", "/"),
        Page("model", f"/models/{quote(model)}"),
        Page("run", f"/runs/{middle}"),
        Page("batch", "/batches/batch-000000"),
        Page("compare", f"/compare?base={run_id(0)}&head={run_id(1)}"),
        Page("compare (batches)", "/compare?base=batch-000000&head=batch-000001"),
        Page("flaky", "/flaky"),
        Page("regressions", "/regressions"),
        Page("tests", "/tests"),
        Page("test history", f"/tests/history?test_id={quote(HISTORY_TEST)}"),
        Page("generator", "/generator"),
        Page("task", f"/generator/tasks/{BENCH_TASK}"),
        Page("sql", "/sql"),
    ]


def seed_generator(client: httpx.Client, scale: Scale) -> None:
    """Record a few generator tasks through the API (the bench data set is Test Suite only)."""
    models = model_names(scale)
    for k in range(GENERATOR_TASKS):
        body = {
            "task_id": BENCH_TASK if k == 0 else f"bench-task-{k + 1:04d}",
            "model_name": models[k % len(models)],
            "hardware": ["cpu"],
            "status": "completed",
            "architecture": "encoder",
            "duration": 1.0 + k % 7,
        }
        response = client.post("/api/generator/db/tasks", json=body)
        if response.status_code not in (201, 409):
            response.raise_for_status()


def measure(url: str, scale: Scale) -> dict[str, Any]:
    """Time every page (one warm-up, then `query_reps` rounds, interleaved); p50/p95 in ms."""
    listed = pages(scale)
    times: dict[str, list[float]] = {p.name: [] for p in listed}
    sizes: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        seed_generator(client, scale)
        for page in listed:
            response = client.get(page.path)
            if response.status_code != 200:
                raise RuntimeError(f"{page.path}: {response.status_code} {response.text[:500]}")
        for _ in range(scale.query_reps):
            for page in listed:
                t0 = time.perf_counter()
                response = client.get(page.path)
                body = response.content
                times[page.name].append(time.perf_counter() - t0)
                response.raise_for_status()
                sizes[page.name] = len(body)
    return {
        page.name: {
            "request": f"GET {page.path}",
            "http": summary_ms(times[page.name]),
            "response_bytes": sizes[page.name],
            "limit_ms": PAGE_LIMIT_MS,
        }
        for page in listed
    }
