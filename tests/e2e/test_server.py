"""A real uvicorn process: it starts, migrates, serves, and refuses a second server per file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, Server


def test_uvicorn_serves_health_and_docs(server: Server) -> None:
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok"
    assert all(c["at_head"] for c in health["components"].values())
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


@pytest.mark.duckdb_only  # one DuckDB file has one writer process; PostgreSQL takes several
def test_second_process_on_the_same_file_fails_with_one_clear_sentence(
    server: Server, tmp_path: Path
) -> None:
    assert server.proc is not None
    result = subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        f"is in use by process {server.proc.pid}; run one server per database file" in result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.duckdb_only  # one DuckDB file has one writer process; PostgreSQL takes several
def test_second_uvicorn_on_the_same_file_exits_without_a_traceback(server: Server) -> None:
    second = Server(server.folder)
    second.log = server.folder / "second.log"
    second.env = {**server.env}
    try:
        second.start(timeout=20)
        raise AssertionError("the second server started")
    except RuntimeError:
        pass
    finally:
        second.stop()
    log = second.log.read_text()
    assert "run one server per database file" in log
    assert "Traceback" not in log
