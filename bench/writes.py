"""5. Small writes: concurrent clients sending step and progress updates for a fixed time.

The same client setup also measures the HTTP ceiling: a route that touches no database.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.server import RssSampler
from bench.stats import summary_ms

PREFIX = "/api/test/db"
STEPS = ("setup", "load_model", "run_tests", "collect", "teardown")
# GET /api/test/types without a model: a constant list built from the suite's test types; it
# reads no database and starts no collection (app/components/test_suite/exec_router.py).
CEILING_PATH = "/api/test/types"

# One request of a client: (its kind for the results file, the request to await).
Request = tuple[str, Awaitable[httpx.Response]]


def _update(client: httpx.AsyncClient, rid: str, n: int, prefer: dict[str, str]) -> Request:
    """Return the n-th request of a run's client: a step PUT, then a progress PATCH, and so on."""
    progress = round((n % 100) / 100, 2)
    if n % 2 == 0:
        step = STEPS[(n // 2) % len(STEPS)]
        body = {"status": "running", "progress": progress}
        return "PUT steps", client.put(f"{PREFIX}/run/{rid}/steps/{step}", json=body)
    body = {"progress": progress, "current_step": STEPS[n % len(STEPS)]}
    return "PATCH progress", client.patch(f"{PREFIX}/run/{rid}", json=body, headers=prefer)


async def _load(
    client: httpx.AsyncClient,
    keys: list[str],
    seconds: float,
    make: Callable[[str, int], Request],
) -> dict[str, Any]:
    """Run one client per key for `seconds`, each awaiting `make(key, n)` in turn; figures."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    deadline = time.perf_counter() + seconds

    async def worker(key: str) -> None:
        n = 0
        while time.perf_counter() < deadline:
            kind, request = make(key, n)
            t0 = time.perf_counter()
            try:
                code = str((await request).status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            latencies.append(time.perf_counter() - t0)
            statuses[code] += 1
            by_kind[kind] += 1
            n += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(key) for key in keys))
    wall = time.perf_counter() - began
    total = sum(statuses.values())
    return {
        "clients": len(keys),
        "seconds": round(wall, 3),
        "requests": total,
        "requests_per_s": round(total / wall, 1),
        "errors": sum(n for code, n in statuses.items() if not code.startswith("2")),
        "statuses": dict(statuses),
        "by_kind": dict(by_kind),
        "request": summary_ms(latencies),
    }


def _client(url: str, clients: int) -> httpx.AsyncClient:
    """Return the bench's async client: one keep-alive connection per concurrent client."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    return httpx.AsyncClient(base_url=url, timeout=60, limits=limits)


async def _hammer(url: str, clients: int, seconds: float, minimal: bool) -> dict[str, Any]:
    # With `minimal`, the PATCH asks for the run's summary, as the pytest plugin does; without,
    # it gets the whole run back (every case, step and metric read again).
    prefer = {"Prefer": "return=minimal"} if minimal else {}
    async with _client(url, clients) as client:
        run_ids = [f"writes-{'min-' if minimal else ''}{k:03d}" for k in range(clients)]
        for rid in run_ids:
            body = {"run_id": rid, "model_name": "bench-writes", "status": "running"}
            (await client.post(f"{PREFIX}/runs", json=body)).raise_for_status()
        result = await _load(
            client, run_ids, seconds, lambda rid, n: _update(client, rid, n, prefer)
        )
    return {**result, "prefer_minimal": minimal}


def measure(
    url: str, clients: int, seconds: float, sampler: RssSampler, minimal: bool = False
) -> dict[str, Any]:
    """Run the small-writes load and return requests/s, errors, latency and peak RSS."""
    sampler.reset()
    result = asyncio.run(_hammer(url, clients, seconds, minimal))
    result["peak_rss_mb"] = round(sampler.peak(), 1)
    return result


async def _ceiling(url: str, clients: int, seconds: float) -> dict[str, Any]:
    async with _client(url, clients) as client:
        keys = [str(k) for k in range(clients)]
        result = await _load(
            client, keys, seconds, lambda _k, _n: ("GET", client.get(CEILING_PATH))
        )
    return {**result, "path": CEILING_PATH}


def ceiling(url: str, clients: int, seconds: float, sampler: RssSampler) -> dict[str, Any]:
    """Send GET /api/test/types (no database) with the small writes' client setup; req/s, p95."""
    sampler.reset()
    result = asyncio.run(_ceiling(url, clients, seconds))
    result["peak_rss_mb"] = round(sampler.peak(), 1)
    return result
