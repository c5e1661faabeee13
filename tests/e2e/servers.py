"""Several uvicorn processes on one database, started at once (the PostgreSQL e2e tests)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import Server


@contextmanager
def started_together(
    folder: Path, count: int, env: dict[str, str] | None = None
) -> Iterator[list[Server]]:
    """Start `count` servers on the folder's databases at once; stop them all at the end.

    They all migrate at start-up: one holds the migration lock, the others wait and find the
    databases at head. Each writes its own log (server0.log, server1.log, ...).
    """
    servers = [Server(folder, env) for _ in range(count)]
    for i, server in enumerate(servers):
        server.log = folder / f"server{i}.log"
    with ThreadPoolExecutor(count) as pool:
        starting = [pool.submit(s.start, 120) for s in servers]
        try:
            for future in starting:
                future.result()
            yield servers
        finally:
            for server in servers:
                server.stop()


def record_runs(urls: list[str], count: int, prefix: str, clients: int = 16) -> list[int]:
    """Record `count` runs of 50 passed tests from `clients` threads, round-robin over `urls`
    (4 models); return the HTTP statuses in order."""

    def record(i: int) -> int:
        doc = {
            "run_id": f"{prefix}{i:03d}",
            "model_name": f"m{i % 4}",
            "hardware": ["cpu"],
            "status": "completed",
            "results": {"test_details": [{"name": f"t{j}", "status": "passed"} for j in range(50)]},
        }
        url = urls[i % len(urls)]
        return httpx.post(f"{url}/api/test/db/runs", json=doc, timeout=60).status_code

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(record, range(count)))
