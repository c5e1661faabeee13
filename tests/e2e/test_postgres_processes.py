"""Several server processes on one PostgreSQL database: start together, write, read each other."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import started_together
from tests.support import Server

pytestmark = [pytest.mark.postgres_only, pytest.mark.e2e]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    """Two uvicorn processes on the same (empty) PostgreSQL databases, started at once."""
    with started_together(tmp_path, 2) as pair:
        yield pair


def run_doc(run_id: str) -> dict[str, object]:
    """Return a small run document with cases and metrics."""
    return {
        "run_id": run_id,
        "model_name": "bert",
        "hardware": ["cpu"],
        "status": "completed",
        "results": {"tests_passed": 2, "tests_failed": 0, "tests_skipped": 0},
        "metrics": [{"name": "latency", "value": 1.5, "unit": "ms"}],
        "tags": {"suite": "e2e"},
    }


def test_two_processes_record_and_read_each_others_runs(servers: list[Server]) -> None:
    for s in servers:
        health = httpx.get(f"{s.url}/health").json()
        assert all(c["at_head"] for c in health["components"].values())

    def record(i: int) -> int:
        url = servers[i % 2].url
        return httpx.post(f"{url}/api/test/db/runs", json=run_doc(f"r{i}"), timeout=60).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(record, range(40))) == [201] * 40
    for s in servers:
        body = httpx.get(f"{s.url}/api/test/db/runs", params={"limit": 100}, timeout=30).json()
        assert sorted(r["run_id"] for r in body) == sorted(f"r{i}" for i in range(40))
        detail = httpx.get(f"{s.url}/api/test/db/run/r7", timeout=30).json()
        assert detail["run_id"] == "r7" and detail["model_name"] == "bert"


def test_one_run_id_posted_to_both_processes_at_once_is_one_run_and_never_a_500(
    servers: list[Server],
) -> None:
    for attempt in range(5):
        run_id = f"race{attempt}"
        with ThreadPoolExecutor(2) as pool:
            codes = sorted(
                pool.map(
                    lambda s, run_id=run_id: (
                        httpx.post(  # type: ignore[misc]
                            f"{s.url}/api/test/db/runs", json=run_doc(run_id), timeout=60
                        ).status_code
                    ),
                    servers,
                )
            )
        # Reposting a run is an idempotent upsert; when both insert at the same instant, the
        # loser's unique violation is a 409 (retry-able), never a 500.
        assert codes[0] == 201 and codes[1] in (201, 409), codes
    for s in servers:
        body = httpx.get(f"{s.url}/api/test/db/runs", params={"limit": 100}, timeout=30).json()
        assert sorted(r["run_id"] for r in body) == [f"race{i}" for i in range(5)]
        detail = httpx.get(f"{s.url}/api/test/db/run/race0", timeout=30).json()
        assert len(detail["metrics"]) == 1, detail["metrics"]


def test_a_batch_whose_runs_end_at_once_in_two_processes_ends_completed(
    servers: list[Server],
) -> None:
    # Each process completes one of the batch's two runs at the same instant; each derives the
    # batch's status from its members. Without a row lock each could miss the other's change
    # and leave the batch running.
    base = f"{servers[0].url}/api/test/db"
    for attempt in range(8):
        batch = f"b{attempt}"
        assert httpx.post(f"{base}/batches", json={"batch_id": batch}, timeout=30).is_success
        members = [f"{batch}-r{i}" for i in range(2)]
        for run_id in members:
            doc = {**run_doc(run_id), "status": "running"}
            assert httpx.post(f"{base}/runs", json=doc, timeout=30).status_code == 201
            assert httpx.put(f"{base}/batch/{batch}/runs/{run_id}", timeout=30).is_success
        with ThreadPoolExecutor(2) as pool:
            codes = list(
                pool.map(
                    lambda pair: (
                        httpx.post(
                            f"{pair[0].url}/api/test/db/run/{pair[1]}/complete", timeout=60
                        ).status_code
                    ),
                    zip(servers, members, strict=True),
                )
            )
        assert codes == [200, 200]
        for s in servers:
            got = httpx.get(f"{s.url}/api/test/db/batch/{batch}", timeout=30).json()
            assert got["status"] == "completed", (attempt, got)
