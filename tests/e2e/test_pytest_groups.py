"""kill -9 of the server leaves no pytest behind: parent-death signal, then a reap at start-up."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import psutil

from tests.support import Server

SUITES = Path(__file__).resolve().parents[1] / "fixtures" / "suites"


def gone(pid: int, timeout: float) -> bool:
    """Return whether process `pid` is gone (or a zombie) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_a_killed_server_leaves_no_pytest_group(tmp_path: Path) -> None:
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    shutil.copy(SUITES / "test_hanging.py", tests_dir / "test_hanging.py")
    pid_file = tmp_path / "pids"
    env = {"APP_TESTS_DIR": str(tests_dir), "FIXTURE_PID_FILE": str(pid_file)}
    server = Server(tmp_path, env).start()
    child = 0
    try:
        run = httpx.post(f"{server.url}/api/test/run", json={"model_name": "hanging"}, timeout=30)
        assert run.status_code == 202, run.text
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline, "the hanging test never started"
            time.sleep(0.1)
        pytest_pid, child = (int(x) for x in pid_file.read_text().split())
        assert os.getpgid(child) == pytest_pid  # pytest leads its own group
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        assert gone(pytest_pid, 5), "pytest outlived the server (no parent-death signal)"
        # Its child (same group) is reaped by the next server of this results folder.
        again = Server(tmp_path, env).start()
        try:
            assert gone(child, 5), "the next server did not reap the group"
        finally:
            again.stop()
    finally:
        server.stop()
        if child and not gone(child, 0.1):
            os.kill(child, signal.SIGKILL)
