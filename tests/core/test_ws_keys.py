"""WebSocket keys: subscribing follows the read rule, `cancel` needs a write key (both parts)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.components.generator import runner as generator_runner
from app.main import create_app
from tests.support import make_settings

SUITES = Path(__file__).resolve().parents[1] / "fixtures" / "suites"
KEY = "ws-secret-key"
HEADERS = {"X-API-Key": KEY}


def keyed_client(tmp_path: Path, template_dbs: dict[str, Path], **extra: object) -> TestClient:
    """Return a TestClient on an app with one API key and the fixture suites."""
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir(exist_ok=True)
    for suite in SUITES.glob("test_*.py"):
        shutil.copy(suite, tests_dir / suite.name)
    settings = make_settings(tmp_path, template_dbs, tests_dir=tests_dir, api_keys=[KEY], **extra)
    return TestClient(create_app(settings))


@pytest.fixture
def keyed(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    """A keyed app whose reads are open."""
    with keyed_client(tmp_path, template_dbs) as client:
        yield client


@pytest.fixture
def protected(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    """A keyed app whose reads need a key too."""
    with keyed_client(tmp_path, template_dbs, protect_reads=True) as client:
        yield client


def hanging_run(client: TestClient) -> str:
    """Start the hanging suite and wait until its test is running."""
    response = client.post("/api/test/run", json={"model_name": "hanging"}, headers=HEADERS)
    assert response.status_code == 202, response.text
    run_id = str(response.json()["run_id"])
    deadline = time.monotonic() + 60
    while client.get(f"/api/test/status/{run_id}", headers=HEADERS).json()["progress"] < 0.5:
        assert time.monotonic() < deadline, "the hanging suite never got to its hanging test"
        time.sleep(0.05)
    return run_id


def status(client: TestClient, run_id: str) -> str:
    """Return a run's status."""
    return str(client.get(f"/api/test/status/{run_id}", headers=HEADERS).json()["status"])


def until(ws: Any, kind: str) -> dict[str, Any]:
    """Read messages until one of `kind` comes, and return it."""
    for _ in range(200):
        message = ws.receive_json()
        if message["type"] == kind:
            return dict(message)
    raise AssertionError(f"no {kind} message")


def cancel_and_wait(client: TestClient, run_id: str, ws: Any) -> None:
    """Cancel over the socket and check the run ends cancelled."""
    ws.send_json({"type": "cancel"})
    assert until(ws, "cancel")["cancelled"] is True
    deadline = time.monotonic() + 60
    while status(client, run_id) != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_cancel_without_a_key_is_refused_and_the_run_keeps_running(keyed: TestClient) -> None:
    run_id = hanging_run(keyed)
    with keyed.websocket_connect(f"/api/test/ws/{run_id}") as ws:
        ws.send_json({"type": "cancel"})
        error = until(ws, "error")
        assert error["code"] == "unauthorized"
        ws.send_text("ping")
        assert until(ws, "pong") == {"type": "pong"}  # the session goes on
        time.sleep(0.5)
        assert status(keyed, run_id) == "running"
        # A wrong key in an `auth` message is refused; the right one lets cancel through.
        ws.send_json({"type": "auth", "key": "wrong"})
        assert until(ws, "error")["code"] == "forbidden"
        ws.send_json({"type": "cancel"})
        assert until(ws, "error")["code"] == "unauthorized"  # a refused key is not kept
        ws.send_json({"type": "auth", "key": KEY})
        assert until(ws, "auth")["ok"] is True
        cancel_and_wait(keyed, run_id, ws)


def test_a_wrong_query_key_cannot_cancel(keyed: TestClient) -> None:
    run_id = hanging_run(keyed)
    with keyed.websocket_connect(f"/api/test/ws/{run_id}?api_key=wrong") as ws:
        ws.send_json({"type": "cancel"})
        assert until(ws, "error")["code"] == "forbidden"
        time.sleep(0.3)
        assert status(keyed, run_id) == "running"
        ws.send_json({"type": "auth", "key": KEY})
        until(ws, "auth")
        cancel_and_wait(keyed, run_id, ws)


def test_the_api_key_query_parameter_is_a_write_key(keyed: TestClient) -> None:
    run_id = hanging_run(keyed)
    with keyed.websocket_connect(f"/api/test/ws/{run_id}?api_key={KEY}") as ws:
        cancel_and_wait(keyed, run_id, ws)


def test_the_header_key_is_a_write_key(keyed: TestClient) -> None:
    run_id = hanging_run(keyed)
    with keyed.websocket_connect(f"/api/test/ws/{run_id}", headers=HEADERS) as ws:
        cancel_and_wait(keyed, run_id, ws)


def test_protected_reads_refuse_a_subscription_without_a_key(protected: TestClient) -> None:
    run_id = hanging_run(protected)
    with protected.websocket_connect(f"/api/test/ws/{run_id}") as ws:
        ws.send_json({"type": "status"})  # not an `auth` message: no key offered
        error = ws.receive_json()
        assert error["type"] == "error" and error["code"] == "unauthorized"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4401
    with protected.websocket_connect(f"/api/test/ws/{run_id}?api_key=wrong") as ws:
        assert ws.receive_json()["code"] == "forbidden"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4403
    # An unknown run is not revealed to a client without a key.
    with protected.websocket_connect("/api/test/ws/nope") as ws:
        ws.send_json({"type": "ping"})
        assert ws.receive_json()["code"] == "unauthorized"
    assert status(protected, run_id) == "running"


def test_protected_reads_accept_a_first_auth_message(protected: TestClient) -> None:
    run_id = hanging_run(protected)
    with protected.websocket_connect(f"/api/test/ws/{run_id}") as ws:
        ws.send_json({"type": "auth", "key": KEY})
        assert until(ws, "status")["status"] == "running"
        cancel_and_wait(protected, run_id, ws)


def test_generator_cancel_needs_a_write_key(
    keyed: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    resolve = generator_runner.resolve_family

    def held(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        return resolve(*args, **kwargs)

    monkeypatch.setattr(generator_runner, "resolve_family", held)
    try:
        response = keyed.post("/api/generator/model", json={"model_name": "gpt2"}, headers=HEADERS)
        task_id = response.json()["task_id"]
        with keyed.websocket_connect(f"/api/generator/ws/{task_id}") as ws:
            ws.send_json({"type": "cancel"})
            assert until(ws, "error")["code"] == "unauthorized"
            task = keyed.get(f"/api/generator/status/{task_id}").json()
            assert task["status"] in {"queued", "running"}
            ws.send_json({"type": "auth", "key": KEY})
            until(ws, "auth")
            ws.send_json({"type": "cancel"})
            assert until(ws, "cancel")["cancelled"] is True
    finally:
        release.set()
