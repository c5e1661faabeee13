"""The app factory: health, docs, settings, and one clear error for bad start-ups."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.__main__ import bind
from app.core.config import Settings
from app.main import create_app
from tests.support import make_settings


def test_health_reports_both_databases_at_head(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert set(body["components"]) == {"test_suite", "generator"}
    for item in body["components"].values():
        assert item["reachable"] is True
        assert item["at_head"] is True
        assert item["revision"] == item["head"]


def test_docs_redoc_and_openapi_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/health" in spec["paths"]


def test_start_up_migrates_empty_files_and_creates_the_data_folder(tmp_path: Path) -> None:
    settings = Settings(
        test_db_path=tmp_path / "new" / "test_runs.duckdb",
        generator_db_path=tmp_path / "new" / "generator_tasks.duckdb",
        export_dir=tmp_path / "exports",
        output_dir=tmp_path / "gen",
        results_dir=tmp_path / "results",
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings)) as test_client:
        assert test_client.get("/health").json()["status"] == "ok"
    assert (tmp_path / "new" / "test_runs.duckdb").exists()


def test_both_components_may_share_one_database_file(tmp_path: Path) -> None:
    shared = tmp_path / "shared.duckdb"
    settings = Settings(
        test_db_path=shared,
        generator_db_path=shared,
        results_dir=tmp_path / "r",
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings)) as test_client:
        body = test_client.get("/health").json()
    assert body["status"] == "ok"
    assert {c["database"] for c in body["components"].values()} == {f"duckdb:///{shared}"}


def test_health_is_degraded_when_a_database_is_not_at_head(
    tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    settings = make_settings(tmp_path, template_dbs, migrate_on_start=False)
    settings.test_db_path.unlink()
    with TestClient(create_app(settings)) as test_client:
        response = test_client.get("/health")
    assert response.status_code == 503
    assert response.json()["components"]["test_suite"]["at_head"] is False


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PORT", "9001")
    monkeypatch.setenv("APP_COMPONENTS", "generator")
    monkeypatch.setenv("APP_API_KEYS", "k1, k2")
    monkeypatch.setenv("APP_TEST_DATABASE_URL", "duckdb:///:memory:x")
    settings = Settings()
    assert settings.port == 9001
    assert settings.components == ["generator"]
    assert settings.api_keys == ["k1", "k2"]
    assert settings.host == "127.0.0.1"
    assert settings.database_url("test_suite") == "duckdb:///:memory:x"


def test_unknown_component_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown components"):
        Settings(components=["nope"])


def test_disabled_component_has_no_routes(tmp_path: Path, template_dbs: dict[str, Path]) -> None:
    settings = make_settings(tmp_path, template_dbs, components=["generator"])
    with TestClient(create_app(settings)) as test_client:
        paths = test_client.get("/openapi.json").json()["paths"]
        health = test_client.get("/health").json()
    assert not any(p.startswith("/api/test/") for p in paths)
    assert set(health["components"]) == {"generator"}


def test_the_served_socket_answers_without_nagle() -> None:
    """`python -m app serve` binds its own socket; its connections must have TCP_NODELAY.

    With Nagle on, every keep-alive answer waited for the client's delayed ACK (~40 ms).
    """
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen: list[int] = []

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(
            writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        )
        writer.close()

    async def connect_once() -> None:
        server = await asyncio.start_server(handle, sock=sock)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(connect_once())
    assert len(seen) == 1 and seen[0] != 0
