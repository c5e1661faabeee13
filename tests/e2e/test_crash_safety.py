"""kill -9 of a real uvicorn mid-ingest and mid-import: every acknowledged write is there, whole.

Writers post runs with many cases (and JUnit files with many test cases) from several threads;
the server is killed with SIGKILL while requests are in flight, then started again on the same
databases (DuckDB files; with `--backend postgres`, PostgreSQL databases on a server that keeps
running). Every run the server acknowledged must be present with all its cases and its results
row, and every run present at all (acknowledged or not) must be complete: nothing half-written.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from tests.support import Server, component_url, on_postgres

DB = "/api/test/db"
WRITERS = 4


def cases_of(key: int) -> int:
    """Return how many cases the run numbered `key` carries (each run its own count)."""
    return 800 + key % 97


def run_doc(run_id: str, cases: int) -> dict[str, object]:
    """Return a finished run with `cases` cases, a step, a metric and a tag."""
    return {
        "run_id": run_id,
        "model_name": "crash",
        "hardware": ["cpu"],
        "status": "completed",
        "results": {
            "test_details": [
                {"name": f"tests/test_m.py::test_{i}", "status": "passed", "duration_ms": 1.0}
                for i in range(cases)
            ],
        },
        "steps": [{"step_name": "pytest", "status": "completed"}],
        "metrics": [{"name": "latency", "value": 1.0}],
        "tags": {"writer": run_id},
    }


def junit_xml(cases: int) -> bytes:
    """Return one JUnit file with `cases` passing test cases."""
    body = "".join(f'<testcase classname="m" name="test_{i}" time="0.001"/>' for i in range(cases))
    return (f'<testsuite name="crash" tests="{cases}">{body}</testsuite>').encode()


Post = Callable[[httpx.Client, str, int], bool]


def hammer(srv: Server, post: Post, min_acks: int) -> tuple[dict[str, int], dict[str, int]]:
    """Write from several threads, SIGKILL the server mid-flight; return (acked, sent) ids."""
    acked: dict[str, int] = {}
    sent: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            for n in range(10_000):
                if stop.is_set():
                    return
                key = w * 10_000 + n
                run_id = f"w{w}-{n}"
                with lock:
                    sent[run_id] = cases_of(key)
                try:
                    ok = post(client, run_id, cases_of(key))
                except httpx.HTTPError:
                    return  # the server is gone
                if ok:
                    with lock:
                        acked[run_id] = cases_of(key)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while len(acked) < min_acks:
        assert time.monotonic() < deadline, f"only {len(acked)} writes acknowledged"
        time.sleep(0.02)
    time.sleep(0.15)  # requests are in flight now
    assert srv.proc is not None
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(10)
    stop.set()
    for thread in threads:
        thread.join(60)
    assert len(sent) > len(acked), "no request was in flight when the server was killed"
    return dict(acked), dict(sent)


def stored(url: str) -> dict[str, tuple[int, int, int]]:
    """Return run id -> (cases, results rows, steps) as stored in the test suite's database."""
    # DuckDB: read-only, on the file the stopped server left; PostgreSQL: a plain connection.
    engine = create_engine(url, connect_args={} if on_postgres() else {"read_only": True})
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    """
                    SELECT r.run_id,
                       (SELECT count(*) FROM test_run_cases c WHERE c.run_id = r.run_id),
                       (SELECT count(*) FROM test_run_results x WHERE x.run_id = r.run_id),
                       (SELECT count(*) FROM test_run_steps s WHERE s.run_id = r.run_id)
                    FROM test_runs r WHERE r.model_name = 'crash'
                    """
                )
            ).fetchall()
            orphans = conn.execute(
                text(
                    "SELECT count(*) FROM test_run_cases"
                    " WHERE run_id NOT IN (SELECT run_id FROM test_runs)"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert orphans == 0, "cases without their run"
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def restart_and_check(srv: Server, acked: dict[str, int], sent: dict[str, int], steps: int) -> None:
    """Start the server again on the same databases, stop it, and check every run stored."""
    srv.start()  # recovers DuckDB's log at start-up (PostgreSQL's server was never killed)
    assert httpx.get(f"{srv.url}/health", timeout=10).status_code == 200
    srv.stop()
    found = stored(component_url(srv.folder, "test_suite"))
    missing = sorted(set(acked) - set(found))
    assert not missing, f"{len(missing)} acknowledged runs lost, e.g. {missing[:3]}"
    for run_id, (cases, results, step_rows) in found.items():
        assert run_id in sent, run_id
        assert (cases, results, step_rows) == (sent[run_id], 1, steps), (run_id, cases)


def test_kill_9_mid_ingest_loses_no_acknowledged_run_and_leaves_none_half_written(
    tmp_path: Path,
) -> None:
    srv = Server(tmp_path).start()

    def post(client: httpx.Client, run_id: str, cases: int) -> bool:
        answer = client.post(
            f"{DB}/runs", json=run_doc(run_id, cases), headers={"Prefer": "return=minimal"}
        )
        return answer.status_code == 201

    try:
        acked, sent = hammer(srv, post, min_acks=12)
    finally:
        srv.stop()
    assert len(acked) >= 12
    restart_and_check(srv, acked, sent, steps=1)


def test_kill_9_mid_junit_import_loses_no_acknowledged_import(tmp_path: Path) -> None:
    srv = Server(tmp_path).start()

    def post(client: httpx.Client, run_id: str, cases: int) -> bool:
        answer = client.post(
            f"{DB}/import/junit",
            params={"model_name": "crash", "run_id": run_id},
            content=junit_xml(cases),
            headers={"Content-Type": "application/xml"},
        )
        if answer.status_code == 201:
            assert answer.json()["cases"] == cases
            return True
        return False

    try:
        acked, sent = hammer(srv, post, min_acks=12)
    finally:
        srv.stop()
    assert len(acked) >= 12
    restart_and_check(srv, acked, sent, steps=0)
