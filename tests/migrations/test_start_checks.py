"""Start-up refuses a database newer than the code, or one at head that lacks a table."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.main import create_app
from tests.support import Server, make_settings


def execute(url: str, *statements: str) -> None:
    """Run statements in one transaction on a database no server holds."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def refusal(folder: Path) -> str:
    """Start real uvicorn on the folder's databases; return its log once it has refused."""
    server = Server(folder)
    try:
        with pytest.raises(RuntimeError, match="server exited"):
            server.start(timeout=30)
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log
    return log


def test_a_newer_revision_is_refused_without_copying_the_file(
    tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    settings = make_settings(tmp_path, template_dbs, backup_before_migrate=True)
    execute(
        settings.database_url("test_suite"),
        "UPDATE alembic_version_test_suite SET version_num = 'ts_9999'",
    )
    message = refusal(tmp_path)
    assert "newer than this code (ts_9999 > ts_" in message
    assert not list(tmp_path.glob("*.bak")), "a refused start must not copy the database"


def test_a_database_at_head_missing_a_table_is_refused_with_the_difference(
    tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    settings = make_settings(tmp_path, template_dbs)
    execute(
        settings.database_url("test_suite"),
        "DROP TABLE test_run_tags",
        "ALTER TABLE test_run_cases DROP COLUMN duration_ms",
    )
    message = refusal(tmp_path)
    assert "lacks" in message
    assert "table test_run_tags" in message
    assert "column test_run_cases.duration_ms" in message


def test_a_database_at_head_starts_and_makes_no_copy(
    tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    settings = make_settings(tmp_path, template_dbs, backup_before_migrate=True)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
    assert not list(tmp_path.glob("*.bak"))
