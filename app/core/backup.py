"""Backups of DuckDB files: a consistent copy while serving (server side), backup/restore CLI.

A copy is consistent because it is taken under the database's write lock right after a
CHECKPOINT: no write transaction runs, DuckDB's log is empty and the file holds every commit.
DuckDB lets one process open a file, so while a server serves, `python -m app backup` asks it
(`POST /api/<component>/db/backup`, an admin key); with no server it opens the file itself.
`restore` needs the server stopped, refuses to overwrite without `--force` and refuses a copy
whose revision this code does not know.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.core.db import Database, duckdb_file
from app.core.errors import AppError, BadRequest, Conflict, StartupError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")
MANIFEST = "manifest.json"


class BackupUnsupported(AppError):
    """The database is not a DuckDB file (use the server's own tools, e.g. pg_dump) (400)."""

    code = "backup_unsupported"


class BackupFailed(AppError):
    """The copy could not be written (disk full, permissions) (503)."""

    status_code = 503
    code = "backup_failed"


def stamp() -> str:
    """Return the current UTC time as a file-name stamp."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def backup_target(folder: Path, name: str | None, component: str) -> Path:
    """Return where a named backup goes: a bare name inside `folder` (never outside it)."""
    name = name or f"{component}-{stamp()}.duckdb"
    if not NAME.match(name) or ".." in name:
        raise BadRequest(
            "a backup name is 1-120 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit, without '..'",
            code="invalid_name",
        )
    if not name.endswith(".duckdb"):
        name += ".duckdb"
    folder = folder.resolve()
    target = (folder / name).resolve()
    if target.parent != folder:
        raise BadRequest("a backup name must stay in the backups folder", code="invalid_name")
    if target.exists():
        raise Conflict(f"a backup named {name} exists already", code="backup_exists")
    return target


_COPY = "import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])"


def _copy(source: Path, target: Path) -> None:
    """Copy a file through a temporary name, in a child process.

    A child process because DuckDB's lock on the file is a POSIX record lock: closing *any*
    descriptor of the file in the process holding it releases it, so a copy made in the server
    (or in a CLI holding the file) would let a second process open the database.
    """
    partial = target.with_name(f".{target.name}.partial")
    try:
        done = subprocess.run(
            [sys.executable, "-c", _COPY, str(source), str(partial)],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if done.returncode != 0:
            reason = done.stderr.strip().splitlines()[-1:] or ["unknown error"]
            raise OSError(f"copying {source} to {target} failed: {reason[0]}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def copy_serving(db: Database, target: Path) -> int:
    """Copy a served DuckDB file to `target` under its write lock, after a checkpoint."""
    path = duckdb_file(db.url)
    if not db.is_duckdb or path is None:
        raise BackupUnsupported("only a DuckDB file can be backed up by the server")
    with db.write_lock:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
        wal = _wal(path)
        if wal.exists() and wal.stat().st_size > 0:
            raise Conflict("the database is busy (its log is not empty); try again", code="busy")
        try:
            _copy(path, target)
        except (OSError, subprocess.SubprocessError) as exc:
            raise BackupFailed(str(exc)) from None
    return target.stat().st_size


@dataclass(frozen=True)
class BackupDone:
    """What one backup wrote."""

    component: str
    file: str
    path: str
    bytes: int
    revision: str | None
    created_at: str


def revision_in(path: Path, component: str) -> str | None:
    """Return a component's Alembic revision stored in a DuckDB file (None: not stamped)."""
    import duckdb

    conn = duckdb.connect(str(path), read_only=True)
    try:
        table = f"alembic_version_{component}"
        found = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
        ).fetchone()
        if not found or not found[0]:
            return None
        row = conn.execute(f'SELECT version_num FROM "{table}"').fetchone()
        return str(row[0]) if row else None
    finally:
        conn.close()


# --- the command line -----------------------------------------------------------------------


class CliError(Exception):
    """A backup or restore cannot go on; the message is one sentence for the operator."""


def _in_use(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "lock" in text or "in use" in text


def _open_locally(path: Path) -> Any:
    """Return a DuckDB connection on `path`, or None when another process (a server) holds it."""
    import duckdb

    try:
        return duckdb.connect(str(path))
    except duckdb.IOException as exc:
        if _in_use(exc):
            return None
        raise CliError(f"{path} cannot be opened: {exc}") from None


@dataclass(frozen=True)
class Target:
    """One database file to back up or restore, and the components whose tables it holds."""

    path: Path
    components: tuple[tuple[str, str], ...]  # (component name, settings key)


def targets(settings: Any, names: list[str]) -> list[Target]:
    """Return the DuckDB files of the named components (one entry per file)."""
    by_path: dict[Path, list[tuple[str, str]]] = {}
    from app.core.config import registered

    keys = {c.name: c.settings_key for c in registered()}
    for name in names:
        path = duckdb_file(settings.database_url(name))
        if path is None:
            raise CliError(f"the {name} database is not a DuckDB file; use its own backup tools")
        by_path.setdefault(path, []).append((name, keys[name]))
    return [Target(path, tuple(comps)) for path, comps in by_path.items()]


def _ask_server(
    url: str, api_key: str | None, target: Target, folder: Path, client: Any
) -> dict[str, str | None]:
    import httpx

    name, key = target.components[0]
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        answer = (client or httpx).post(
            f"{url.rstrip('/')}/api/{key}/db/backup",
            json={"name": f"cli-{stamp()}-{name}.duckdb"},
            headers=headers,
            timeout=600,
        )
    except httpx.HTTPError as exc:
        raise CliError(
            f"{target.path} is in use, and the server at {url} did not answer: {exc}"
        ) from None
    if answer.status_code != 201:
        raise CliError(f"the server refused the backup ({answer.status_code}): {answer.text}")
    made = Path(answer.json()["path"])
    shutil.move(made, folder / target.path.name)
    return {c: answer.json()["revision"] if c == name else None for c, _ in target.components}


def _copy_locally(conn: Any, target: Target, folder: Path) -> dict[str, str | None]:
    try:
        conn.execute("CHECKPOINT")
        # The connection stays open while copying: it holds the file's lock, so no server
        # can start writing mid-copy.
        _copy(target.path, folder / target.path.name)
    finally:
        conn.close()
    return {name: revision_in(folder / target.path.name, name) for name, _ in target.components}


def backup_cli(
    settings: Any,
    folder: Path,
    names: list[str],
    *,
    url: str | None,
    api_key: str | None,
    force: bool = False,
    client: Any = None,
) -> list[str]:
    """Back up the named components' databases into `folder`; return what was done."""
    folder = folder.expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    chosen = targets(settings, names)
    for target in chosen:
        if (folder / target.path.name).exists() and not force:
            raise CliError(f"{folder / target.path.name} exists; use --force to overwrite it")
    manifest: dict[str, Any] = {"created_at": datetime.now(UTC).isoformat(), "files": {}}
    done = []
    for target in chosen:
        if not target.path.exists():
            raise CliError(f"{target.path} does not exist")
        conn = _open_locally(target.path)
        if conn is None:
            server = url or f"http://{settings.host}:{settings.port}"
            revisions = _ask_server(server, api_key, target, folder, client)
            how = f"through the server at {server}"
        else:
            revisions = _copy_locally(conn, target, folder)
            how = "directly (no server holds it)"
        if any(r is None for r in revisions.values()):
            # A file two components share: the server answers for one; read the rest.
            revisions = {n: revision_in(folder / target.path.name, n) for n in revisions}
        manifest["files"][target.path.name] = revisions
        done.append(f"{target.path} -> {folder / target.path.name} {how}")
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return done


def restore_cli(settings: Any, folder: Path, names: list[str], *, force: bool = False) -> list[str]:
    """Copy a backup folder's files over the named components' databases (server stopped)."""
    from alembic.script import ScriptDirectory

    from app.core.migrate import RevisionState, alembic_config, check_known

    folder = folder.expanduser().resolve()
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"{folder} is not a backup folder ({MANIFEST}: {exc})") from None
    files: dict[str, dict[str, str | None]] = manifest.get("files") or {}
    plan = []
    for target in targets(settings, names):
        source = folder / target.path.name
        if target.path.name not in files or not source.is_file():
            raise CliError(f"{folder} holds no copy of {target.path.name}")
        for name, _ in target.components:
            revision = revision_in(source, name)
            if revision is None:
                raise CliError(f"{source} holds no {name} revision: not a backup of it")
            head = ScriptDirectory.from_config(alembic_config(name)).get_current_head()
            try:
                check_known(name, RevisionState(revision, head))  # newer than this code: no
            except StartupError as exc:
                raise CliError(str(exc)) from None
        if target.path.exists() and target.path.stat().st_size > 0:
            if not force:
                raise CliError(f"{target.path} exists; use --force to replace it")
            conn = _open_locally(target.path)
            if conn is None:
                raise CliError(f"{target.path} is in use (a server runs?); stop it first")
            conn.close()
        plan.append((source, target))
    done = []
    for source, target in plan:
        if target.path.exists():
            aside = target.path.with_name(f"{target.path.name}.before-restore-{stamp()}.bak")
            os.replace(target.path, aside)
            done.append(f"kept the replaced file as {aside}")
        # A log left by the replaced file would be replayed onto the restored one: move it too.
        wal = _wal(target.path)
        if wal.exists():
            os.replace(wal, wal.with_name(f"{wal.name}.before-restore-{stamp()}.bak"))
        target.path.parent.mkdir(parents=True, exist_ok=True)
        _copy(source, target.path)
        done.append(f"{source} -> {target.path}")
    return done
