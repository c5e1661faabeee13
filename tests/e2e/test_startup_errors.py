"""Real processes: configuration errors, start-up failures and a taken port are one line each."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, database_env, free_port

pytestmark = pytest.mark.e2e


def env_for(folder: Path, **extra: str) -> dict[str, str]:
    """Return an environment whose databases and folders are in `folder`."""
    return {
        **os.environ,
        **database_env(folder),
        "APP_EXPORT_DIR": str(folder / "exports"),
        "APP_OUTPUT_DIR": str(folder / "generated"),
        "APP_RESULTS_DIR": str(folder / "results"),
        **extra,
    }


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command of the app in the repository; return its outcome."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "command",
    [["-m", "app", "serve"], ["-m", "app", "migrate"], ["-m", "uvicorn", "app.main:app"]],
)
def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path, command: list[str]) -> None:
    result = run(
        [*command, "--port", str(free_port())] if "serve" in command else command,
        env_for(tmp_path, APP_RUN_WORKERS="two"),
    )
    assert result.returncode == 2, result.stderr
    assert "error: APP_RUN_WORKERS=two: not an integer" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.glob("*.duckdb"))


def test_several_bad_settings_are_named_on_one_line(tmp_path: Path) -> None:
    env = env_for(tmp_path, APP_PORT="0", APP_PROTECT_READS="maybe")
    result = run(["-m", "app", "migrate"], env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: APP_PORT=0: must be at least 1; "
        "APP_PROTECT_READS=maybe: not a boolean (use true or false)"
    ]


def test_a_port_in_use_is_found_before_any_database_is_migrated(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["-m", "app", "serve", "--port", str(port)], env_for(tmp_path))
    assert result.returncode == 2, result.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.glob("*.duckdb")), "a database was opened before the port was checked"


def test_python_m_app_serve_serves_on_its_bound_port_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env_for(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert health.status_code == 200
        assert set(health.json()["components"]) == {"test_suite", "generator"}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()


UNCAUGHT = """
import sys

import uvicorn

from app.main import create_app


def refuse() -> None:
    raise LookupError("no such device table")


app = create_app()
app.state.runtimes["test_suite"].start = refuse
uvicorn.run(app, port=int(sys.argv[1]), log_level="info")
"""


def test_any_start_up_exception_exits_non_zero_with_one_sentence_under_uvicorn(
    tmp_path: Path,
) -> None:
    result = run(["-c", UNCAUGHT, str(free_port())], env_for(tmp_path))
    assert result.returncode == 3, result.stderr
    assert "LookupError: no such device table" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Application startup failed" in result.stderr
