"""Backups: a consistent copy while serving (route and CLI), and a restore that checks first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient

from app.__main__ import main
from app.main import create_app
from tests.support import Server, database_env, make_settings

DB = "/api/test/db"
ADMIN = {"X-API-Key": "a-key"}


def run_doc(run_id: str, cases: int = 3) -> dict[str, object]:
    """Return a finished run with `cases` cases."""
    return {
        "run_id": run_id,
        "model_name": "bert",
        "hardware": ["cpu"],
        "status": "completed",
        "results": {"test_details": [{"name": f"t{i}", "status": "passed"} for i in range(cases)]},
    }


@pytest.fixture
def client(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path,
        template_dbs,
        api_keys=["w-key:write", "a-key:admin"],
        backup_dir=tmp_path / "backups",
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def count(path: Path, sql: str) -> int:
    """Return one number from a DuckDB file opened read-only."""
    conn = duckdb.connect(str(path), read_only=True)
    try:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def test_the_backup_route_writes_a_consistent_copy_in_its_folder(
    client: TestClient, tmp_path: Path
) -> None:
    for i in range(5):
        assert client.post(f"{DB}/runs", json=run_doc(f"r{i}"), headers=ADMIN).status_code == 201
    answer = client.post(f"{DB}/backup", json={"name": "nightly"}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["file"] == "nightly.duckdb" and made["revision"]
    path = Path(made["path"])
    assert path.parent == (tmp_path / "backups").resolve()
    assert made["bytes"] == path.stat().st_size
    assert count(path, "SELECT count(*) FROM test_runs") == 5
    assert count(path, "SELECT count(*) FROM test_run_cases") == 15
    again = client.post(f"{DB}/backup", json={"name": "nightly"}, headers=ADMIN)
    assert again.status_code == 409 and again.json()["code"] == "backup_exists"
    stamped = client.post("/api/generator/db/backup", json={}, headers=ADMIN)
    assert stamped.status_code == 201
    assert stamped.json()["file"].startswith("generator-")


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "x" * 121, "a\\b", "é"])
def test_a_backup_name_cannot_leave_its_folder(client: TestClient, name: str) -> None:
    answer = client.post(f"{DB}/backup", json={"name": name}, headers=ADMIN)
    assert answer.status_code in (400, 422), answer.text
    if answer.status_code == 400:
        assert answer.json()["code"] == "invalid_name"


def test_a_backup_needs_an_admin_key(client: TestClient) -> None:
    assert client.post(f"{DB}/backup", json={}).status_code == 401
    refused = client.post(f"{DB}/backup", json={}, headers={"X-API-Key": "w-key"})
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"


def db_args(folder: Path) -> list[str]:
    """Return the CLI flags naming the databases in `folder`."""
    env = database_env(folder)
    return [
        "--test-db-path",
        env["APP_TEST_DB_PATH"],
        "--generator-db-path",
        env["APP_GENERATOR_DB_PATH"],
    ]


def test_cli_backup_while_serving_then_restore_when_stopped(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    srv = Server(live, {"APP_API_KEYS": "a-key:admin", "APP_BACKUP_DIR": str(live / "bk")})
    srv.start()
    try:
        for i in range(20):
            answer = httpx.post(f"{srv.url}{DB}/runs", json=run_doc(f"r{i}", 50), headers=ADMIN)
            assert answer.status_code == 201
        copies = tmp_path / "copies"
        args = [*db_args(live), "--url", srv.url, "--api-key", "a-key"]
        assert main(["backup", str(copies), *args]) == 0
        manifest = json.loads((copies / "manifest.json").read_text())
        assert set(manifest["files"]) == {"test_runs.duckdb", "generator_tasks.duckdb"}
        assert manifest["files"]["test_runs.duckdb"]["test_suite"]
        assert count(copies / "test_runs.duckdb", "SELECT count(*) FROM test_run_cases") == 1000
        assert not list((live / "bk").glob("*.duckdb"))  # moved out of the server's folder
        # The server still holds its file: copying it did not release DuckDB's lock.
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(live / "test_runs.duckdb"))
        # A second backup into the same folder needs --force; a restore while serving is refused.
        assert main(["backup", str(copies), *args]) == 2
        assert main(["restore", str(copies), *db_args(live), "--force"]) == 2
        httpx.delete(f"{srv.url}{DB}/run/r0", headers=ADMIN).raise_for_status()
    finally:
        srv.stop()
    assert main(["restore", str(copies), *db_args(live)]) == 2  # exists: needs --force
    assert main(["restore", str(copies), *db_args(live), "--force"]) == 0
    assert list(live.glob("test_runs.duckdb.before-restore-*.bak"))
    srv.start()
    try:
        assert httpx.get(f"{srv.url}{DB}/run/r0").status_code == 200  # back from the copy
        assert httpx.get(f"{srv.url}{DB}/runs?limit=100").headers["x-total-count"] == "20"
    finally:
        srv.stop()


def test_cli_backup_without_a_server_and_a_newer_copy_is_refused(
    tmp_path: Path, template_dbs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    make_settings(tmp_path / "db", template_dbs)  # copies the migrated templates there
    copies = tmp_path / "copies"
    assert main(["backup", str(copies), *db_args(tmp_path / "db")]) == 0
    assert "directly" in capsys.readouterr().out
    conn = duckdb.connect(str(copies / "test_runs.duckdb"))
    conn.execute("UPDATE alembic_version_test_suite SET version_num = 'ts_9999'")
    conn.close()
    target = tmp_path / "fresh"
    target.mkdir()
    assert main(["restore", str(copies), *db_args(target)]) == 2
    assert "newer than this code (ts_9999" in capsys.readouterr().err
    assert not (target / "test_runs.duckdb").exists()
    assert main(["restore", str(tmp_path / "nowhere"), *db_args(target)]) == 2
    assert "not a backup folder" in capsys.readouterr().err
