"""Helpers every test folder shares: settings on copied databases, and a real uvicorn server.

Backend: DuckDB files by default; with `--backend postgres` (or APP_TEST_BACKEND=postgres) every
database is a PostgreSQL database named after the test's folder, copied from a migrated template
with CREATE DATABASE ... TEMPLATE (the session's cluster: tests/pg_cluster.py or APP_TEST_PG_URL).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy.engine import make_url

from app import components
from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    """Return whether a process runs (a zombie awaiting its reaper counts as dead).

    One call that tolerates the process ending while it is asked (`pid_exists` and then
    `status()` race: the process can end between the two).
    """
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


BACKENDS = ("duckdb", "postgres")


class PgState:
    """The session's PostgreSQL admin URL and the databases this test created (conftest sets it)."""

    admin_url: str | None = None
    created: set[str] = set()
    templates: set[str] = set()


def on_postgres() -> bool:
    """Return whether this test session runs on PostgreSQL."""
    return PgState.admin_url is not None


def stored_characters(**kwargs: object) -> Any:
    """Return a hypothesis alphabet of characters the backend stores (PostgreSQL: no NUL)."""
    from hypothesis import strategies as st

    kwargs.setdefault("exclude_categories", ["Cs"])
    return st.characters(exclude_characters="\x00" if on_postgres() else "", **kwargs)  # type: ignore[arg-type]


def pg_url(name: str) -> str:
    """Return the URL of database `name` on the session's PostgreSQL server."""
    assert PgState.admin_url is not None, "not a PostgreSQL session"
    return make_url(PgState.admin_url).set(database=name).render_as_string(hide_password=False)


def _admin(sql: str) -> None:
    import psycopg

    assert PgState.admin_url is not None
    dsn = make_url(PgState.admin_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def pg_create(name: str, template: str | None = None, *, replace: bool = False) -> str:
    """Create database `name` (empty, or copied from `template`); return its URL."""
    if replace:
        pg_drop(name)
    # FILE_COPY: measured 0.39 s a copy here, against 1.08 s for PG 15's default WAL_LOG.
    source = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else " TEMPLATE template0"
    try:
        _admin(f'CREATE DATABASE "{name}"{source}')
    except Exception as exc:
        if replace or "already exists" not in str(exc):
            raise
    PgState.created.add(name)
    return pg_url(name)


def pg_drop(name: str) -> None:
    """Drop database `name` if it exists, closing its connections (FORCE)."""
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    PgState.created.discard(name)


def pg_name(folder: Path, component: str) -> str:
    """Return the PostgreSQL database name of a component's database for a test folder."""
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
    return f"t_{digest}_{component}"[:63]


def fresh_url(folder: Path, name: str) -> str:
    """Return the URL of a new empty database called `name` for a test folder (either backend)."""
    if on_postgres():
        return pg_create(pg_name(folder, name), replace=True)
    return f"duckdb:///{folder / name}.duckdb"


def component_url(folder: Path, component: str) -> str:
    """Return the URL of a component's database that `database_settings(folder)` configures."""
    if on_postgres():
        return pg_url(pg_name(folder, component))
    comp = next(c for c in components.COMPONENTS if c.name == component)
    return f"duckdb:///{folder / comp.default_db}"


def database_settings(folder: Path) -> dict[str, object]:
    """Return the settings that put every registered component's database file in `folder`.

    A component with its own `<key>_db_path` field gets it; any other (a plugged-in one) is
    configured through `database_paths`. On PostgreSQL: `<key>_database_url` / `database_urls`
    name the folder's databases (created empty when missing).
    """
    if on_postgres():
        return _pg_database_settings(folder)
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


def _pg_database_settings(
    folder: Path, templates: dict[str, Path] | None = None
) -> dict[str, object]:
    values: dict[str, object] = {}
    urls: dict[str, str] = {}
    for comp in components.COMPONENTS:
        name = pg_name(folder, comp.name)
        if templates is None:
            url = pg_create(name)
        else:
            url = pg_create(name, str(templates[comp.name]), replace=True)
        field = f"{comp.settings_key}_database_url"
        if field in Settings.model_fields:
            values[field] = url
        else:
            urls[comp.name] = url
    if urls:
        values["database_urls"] = urls
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
    """Return settings whose databases are fresh copies of the migrated templates.

    On PostgreSQL each `template_dbs` value names a template database, not a file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if on_postgres():
        databases = _pg_database_settings(folder, template_dbs)
    else:
        for comp in components.COMPONENTS:
            shutil.copy(template_dbs[comp.name], folder / comp.default_db)
        databases = database_settings(folder)
    values: dict[str, object] = {
        **databases,
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


@contextmanager
def columns_api(
    folder: Path, template_dbs: dict[str, Path], columns: Any, prefix: str = ""
) -> Iterator[Callable[..., tuple[int, Any]]]:
    """Yield `call(method, path, body, per_row=False)` → (status, JSON) on the real app (fresh
    databases); `per_row` switches the column-wise pass of `columns` (a RowColumns class) off
    (its `_fast` → None): the item model's own validation of every row, as before the pass."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    fast = columns._fast
    with TestClient(create_app(make_settings(folder, template_dbs))) as client:

        def call(method: str, path: str, body: Any, *, per_row: bool = False) -> tuple[int, Any]:
            # NaN and Infinity are sent as Python's json writes them (the app's reader takes them).
            if per_row:
                columns._fast = classmethod(lambda cls, value: None)
            try:
                content = None if body is None else json.dumps(body)
                headers = {"content-type": "application/json"}
                response = client.request(method, prefix + path, content=content, headers=headers)
            finally:
                columns._fast = fast
            return response.status_code, response.json()

        yield call


def free_port() -> int:
    """Return a free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deselect_marked(config: pytest.Config, items: list[pytest.Item], marker: str) -> None:
    """Deselect (as pytest reports it) every collected test carrying `marker`."""
    kept = [item for item in items if item.get_closest_marker(marker) is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


def deselect_unless_asked(config: pytest.Config, items: list[pytest.Item], marker: str) -> None:
    """Leave `marker` tests out unless the -m expression names it (`-m ui`, `-m "not ui"`)."""
    if marker not in re.findall(r"\w+", str(config.getoption("markexpr") or "")):
        deselect_marked(config, items, marker)


class Server:
    """A real uvicorn process serving the app on a free port."""

    def __init__(
        self, folder: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.folder = folder
        self.args = args  # more uvicorn options (e.g. --workers 2)
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

    def start(self, timeout: float = 90.0) -> Server:
        """Start uvicorn and wait until /health answers."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app.main:app",
                    "--port",
                    str(self.port),
                    *self.args,
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"server exited ({code}): {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()  # a server that never answered must not outlive the test
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
