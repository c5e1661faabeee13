"""schemathesis over every operation of /openapi.json against a real uvicorn, open and keyed.

Checked on every answer: no 5xx, the status code is one the operation documents, and the body
(and content type, headers) conforms to the documented schema. Bounded: a few examples per
operation and a per-request timeout, so both runs take a few minutes on two cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import Server

pytestmark = pytest.mark.fuzz

KEY = "fuzz-key-0123456789"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance"
)
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "5")
# The open run also walks each operation's boundary values (the coverage phase: the longest);
# the keyed run fuzzes the same operations with a key, for the auth paths and keyed answers.
OPEN_PHASES = "examples,coverage,fuzzing"
KEYED_PHASES = "examples,fuzzing"
# Server-Sent Events stream a run's changes for as long as it lasts: a client that reads the
# whole answer (as schemathesis does) would wait for the run. They get a bounded read below.
EXCLUDED = r"/events/\{"


def schemathesis(server: Server, folder: Path, phases: str, *headers: str) -> None:
    """Run schemathesis against a live server; fail with its summary when any check fails."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        MAX_EXAMPLES,
        "--phases",
        phases,
        "--seed",
        "16",
        "--workers",
        "1",
        "--request-timeout",
        "45",  # above the 30 s bound of a test collection (GET /types)
        "--exclude-path-regex",
        EXCLUDED,
        "--suppress-health-check",
        "all",
        "--no-shrink",
        "--report",
        "junit",
        "--report-dir",
        str(folder / "report"),
        "--output-truncate",
        "true",
        *[arg for header in headers for arg in ("-H", header)],
    ]
    started = time.monotonic()
    # Its cache goes in the test folder, not the work tree.
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, cwd=folder
    )
    took = time.monotonic() - started
    print(done.stdout[-6000:], done.stderr[-2000:], f"schemathesis took {took:.0f} s", sep="\n")
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-3000:]


def bounded_sse(server: Server, headers: dict[str, str]) -> None:
    """Read the first event of a live run's stream, and a missing run's 404, within seconds."""
    doc = {"run_id": "fuzz-sse", "model_name": "m", "hardware": ["cpu"], "status": "running"}
    created = httpx.post(f"{server.url}/api/test/db/runs", json=doc, headers=headers, timeout=10)
    assert created.status_code == 201, created.text
    missing = httpx.get(f"{server.url}/api/test/events/nope", headers=headers, timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    url = f"{server.url}/api/test/events/fuzz-sse"
    with httpx.stream("GET", url, headers=headers, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                break


def test_fuzz_open_server(tmp_path: Path) -> None:
    server = Server(tmp_path, env={"APP_API_KEYS": ""}).start(timeout=120)
    try:
        bounded_sse(server, {})
        schemathesis(server, tmp_path, OPEN_PHASES)
        assert server.proc is not None and server.proc.poll() is None, "the server died"
    finally:
        server.stop()


def test_fuzz_keyed_server(tmp_path: Path) -> None:
    server = Server(tmp_path, env={"APP_API_KEYS": KEY}).start(timeout=120)
    try:
        bounded_sse(server, {"X-API-Key": KEY})
        schemathesis(server, tmp_path, KEYED_PHASES, f"X-API-Key: {KEY}")
        # Without a key, writes are refused in the documented shape (401), reads still answer.
        unkeyed = httpx.post(f"{server.url}/api/test/db/batches", json={}, timeout=10)
        assert unkeyed.status_code == 401 and unkeyed.json()["code"] == "unauthorized"
        assert server.proc is not None and server.proc.poll() is None, "the server died"
    finally:
        server.stop()
