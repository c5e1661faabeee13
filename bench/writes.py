"""5. Small writes: concurrent clients sending step and progress updates for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx

from bench.server import RssSampler
from bench.stats import summary_ms

PREFIX = "/api/test/db"
STEPS = ("setup", "load_model", "run_tests", "collect", "teardown")


async def _hammer(url: str, clients: int, seconds: float, minimal: bool) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    # With `minimal`, the PATCH asks for the run's summary, as the pytest plugin does; without,
    # it gets the whole run back (every case, step and metric read again).
    prefer = {"Prefer": "return=minimal"} if minimal else {}
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        run_ids = [f"writes-{'min-' if minimal else ''}{k:03d}" for k in range(clients)]
        for rid in run_ids:
            body = {"run_id": rid, "model_name": "bench-writes", "status": "running"}
            (await client.post(f"{PREFIX}/runs", json=body)).raise_for_status()
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        by_kind: Counter[str] = Counter()
        deadline = time.perf_counter() + seconds

        async def worker(rid: str) -> None:
            n = 0
            while time.perf_counter() < deadline:
                progress = round((n % 100) / 100, 2)
                if n % 2 == 0:
                    step = STEPS[(n // 2) % len(STEPS)]
                    kind = "PUT steps"
                    request = client.put(
                        f"{PREFIX}/run/{rid}/steps/{step}",
                        json={"status": "running", "progress": progress},
                    )
                else:
                    kind = "PATCH progress"
                    request = client.patch(
                        f"{PREFIX}/run/{rid}",
                        json={"progress": progress, "current_step": STEPS[n % len(STEPS)]},
                        headers=prefer,
                    )
                t0 = time.perf_counter()
                try:
                    response = await request
                    code = str(response.status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                statuses[code] += 1
                by_kind[kind] += 1
                n += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker(rid) for rid in run_ids))
        wall = time.perf_counter() - began
    total = sum(statuses.values())
    errors = sum(n for code, n in statuses.items() if not code.startswith("2"))
    return {
        "clients": clients,
        "prefer_minimal": minimal,
        "seconds": round(wall, 3),
        "requests": total,
        "requests_per_s": round(total / wall, 1),
        "errors": errors,
        "statuses": dict(statuses),
        "by_kind": dict(by_kind),
        "request": summary_ms(latencies),
    }


def measure(
    url: str, clients: int, seconds: float, sampler: RssSampler, minimal: bool = False
) -> dict[str, Any]:
    """Run the small-writes load and return requests/s, errors, latency and peak RSS."""
    sampler.reset()
    result = asyncio.run(_hammer(url, clients, seconds, minimal))
    result["peak_rss_mb"] = round(sampler.peak(), 1)
    return result
