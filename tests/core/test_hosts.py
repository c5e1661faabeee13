"""The Host rule: only configured hosts are served (DNS rebinding is refused with a JSON 400)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.core.config import Settings
from app.main import create_app
from tests.support import Server, make_settings


def test_a_rebinding_host_is_refused_in_the_error_shape(client: TestClient) -> None:
    for path in ("/health", "/api/test/db/runs", "/openapi.json"):
        response = client.get(path, headers={"Host": "evil.example"})
        assert response.status_code == 400, path
        assert response.json()["code"] == "invalid_host"
    refused = client.post("/api/test/db/run", json={}, headers={"Host": "evil.example:8000"})
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_host"
    assert client.get("/health", headers={"Host": "bad host"}).status_code == 400
    assert client.get("/health").status_code == 200  # testserver is configured in tests


def test_a_rebinding_websocket_is_closed_before_accept(client: TestClient) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/api/test/ws/x", headers={"Host": "evil.example"}),
    ):
        pass
    assert closed.value.code == 1008


def test_the_default_is_the_bind_host_and_loopback() -> None:
    hosts = Settings(host="10.1.2.3").served_hosts()
    assert hosts == ["10.1.2.3", "localhost", "127.0.0.1", "::1"]
    assert "testserver" not in Settings().served_hosts()
    assert Settings(allowed_hosts="a.example, *.b.example").served_hosts() == [  # type: ignore[arg-type]
        "a.example",
        "*.b.example",
    ]


def test_configured_hosts_and_wildcards(tmp_path: Path, template_dbs: dict[str, Path]) -> None:
    settings = make_settings(tmp_path, template_dbs, allowed_hosts=["*.example.org", "::1"])
    with TestClient(create_app(settings)) as client:
        assert client.get("/health", headers={"Host": "api.example.org"}).status_code == 200
        assert client.get("/health", headers={"Host": "[::1]:8000"}).status_code == 200
        assert client.get("/health", headers={"Host": "example.org.evil"}).status_code == 400
        assert client.get("/health").status_code == 400  # testserver is not in this list
    settings = make_settings(tmp_path / "any", template_dbs, allowed_hosts=["*"])
    with TestClient(create_app(settings)) as client:
        assert client.get("/health", headers={"Host": "anything.example"}).status_code == 200


def test_a_real_server_on_its_defaults_serves_loopback_only(tmp_path: Path) -> None:
    server = Server(tmp_path).start()  # no APP_ALLOWED_HOSTS: the app's defaults
    try:
        assert httpx.get(f"{server.url}/health").status_code == 200
        local = httpx.get(f"{server.url}/health", headers={"Host": f"localhost:{server.port}"})
        assert local.status_code == 200
        evil = httpx.get(f"{server.url}/health", headers={"Host": f"evil.example:{server.port}"})
        assert evil.status_code == 400 and evil.json()["code"] == "invalid_host"
    finally:
        server.stop()
