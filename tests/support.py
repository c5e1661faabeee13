"""Helpers every test folder shares: settings on copied databases, and a real uvicorn server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app import components
from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def database_settings(folder: Path) -> dict[str, object]:
    """Return the settings that put every registered component's database file in `folder`.

    A component with its own `<key>_db_path` field gets it; any other (a plugged-in one) is
    configured through `database_paths`.
    """
    values: dict[str, object] = {}
    paths: dict[str, Path] = {}
    for comp in components.COMPONENTS:
        field = f"{comp.settings_key}_db_path"
        if field in Settings.model_fields:
            values[field] = folder / comp.default_db
        else:
            paths[comp.name] = folder / comp.default_db
    if paths:
        values["database_paths"] = paths
    return values


def database_env(folder: Path) -> dict[str, str]:
    """Return `database_settings(folder)` as APP_* environment variables."""
    env = {}
    for name, value in database_settings(folder).items():
        text = (
            json.dumps({k: str(v) for k, v in value.items()}) if isinstance(value, dict) else value
        )
        env[f"APP_{name.upper()}"] = str(text)
    return env


def make_settings(folder: Path, template_dbs: dict[str, Path], **overrides: object) -> Settings:
    """Return settings whose databases are fresh copies of the migrated templates."""
    folder.mkdir(parents=True, exist_ok=True)
    for comp in components.COMPONENTS:
        shutil.copy(template_dbs[comp.name], folder / comp.default_db)
    values: dict[str, object] = {
        **database_settings(folder),
        "export_dir": folder / "exports",
        "output_dir": folder / "generated",
        "results_dir": folder / "results",
        "backup_dir": folder / "backups",
        "backup_before_migrate": False,
        # TestClient sends `Host: testserver`; the app's own defaults are loopback only.
        "allowed_hosts": ["testserver", "localhost", "127.0.0.1", "::1"],
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def free_port() -> int:
    """Return a free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A real uvicorn process serving the app on a free port."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"
        base = {
            **database_env(folder),
            "APP_EXPORT_DIR": str(folder / "exports"),
            "APP_OUTPUT_DIR": str(folder / "generated"),
            "APP_RESULTS_DIR": str(folder / "results"),
            "APP_BACKUP_DIR": str(folder / "backups"),
        }
        self.env = {**os.environ, **base, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Server:
        """Start uvicorn and wait until /health answers."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
