"""Bodies are checked before routes read them: key first, size while streaming, then the text."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.core.body_guard import BodyLimits
from app.core.config import Settings
from app.main import create_app
from tests.support import Server, make_settings

DB = "/api/test/db"
KIB = 1024


def small_run(run_id: str) -> dict[str, object]:
    return {"run_id": run_id, "model_name": "bert", "hardware": ["cpu"], "status": "running"}


@pytest.fixture
def limited(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path, template_dbs, max_body_bytes=64 * KIB, max_small_body_bytes=4 * KIB
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_route_families_get_their_limits() -> None:
    limits = BodyLimits(large=100, small=10)
    for path in (
        f"{DB}/runs",
        f"{DB}/import",
        f"{DB}/import/junit",
        f"{DB}/run/r1/cases",
        f"{DB}/run/r1/metrics",
        f"{DB}/run/r1/results",
        "/api/generator/db/tasks",
        "/api/generator/db/task/t1/metrics",
    ):
        assert limits.limit_for(path) == 100, path
    for path in (f"{DB}/run/r1", f"{DB}/run/r1/steps/load", f"{DB}/search", "/api/test/run"):
        assert limits.limit_for(path) == 10, path


def test_a_small_route_refuses_a_large_body_with_413_and_keeps_the_run(
    limited: TestClient,
) -> None:
    assert limited.post(f"{DB}/runs", json=small_run("r1")).status_code == 201
    big = {"current_step": "x" * (8 * KIB)}
    answer = limited.patch(f"{DB}/run/r1", json=big)
    assert answer.status_code == 413
    assert answer.json()["code"] == "body_too_large"
    assert "4 KiB" in answer.json()["detail"]
    assert limited.get(f"{DB}/run/r1").json()["current_step"] is None


def test_a_recording_route_takes_a_body_over_the_small_limit(limited: TestClient) -> None:
    doc = {**small_run("r2"), "error": "e" * (16 * KIB)}
    assert limited.post(f"{DB}/runs", json=doc).status_code == 201


def test_a_chunked_body_is_counted_as_it_streams(limited: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"run_id": "r3", "model_name": "bert", "error": "'
        for _ in range(100):
            yield b"e" * KIB
        yield b'"}'

    answer = limited.post(
        f"{DB}/runs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert limited.get(f"{DB}/run/r3").status_code == 404


def test_a_lone_surrogate_is_still_refused(limited: TestClient) -> None:
    body = b'{"run_id": "r4", "model_name": "\\ud800"}'
    answer = limited.post(f"{DB}/runs", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_text"


def test_blank_api_keys_are_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match="blank"):
        Settings(api_keys=" , ")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="blank"):
        Settings(api_keys=["k1", " "])
    assert Settings(api_keys="").api_keys == []  # type: ignore[arg-type]


def raw_request(port: int, head: str, timeout: float = 10.0) -> tuple[str, float]:
    """Send only a request head (no body) and return the status line and the seconds it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(65536).decode("latin-1")
    return answer.splitlines()[0], time.monotonic() - started


def test_a_keyed_server_answers_401_before_reading_a_300_mb_body(tmp_path: Path) -> None:
    srv = Server(tmp_path, {"APP_API_KEYS": "k1"}).start()
    try:
        head = (
            f"POST {DB}/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: 314572800\r\n\r\n"
        )
        status, _ = raw_request(srv.port, head)
        assert " 401 " in status
        wrong = head.replace("\r\n\r\n", "\r\nX-API-Key: nope\r\n\r\n")
        assert " 403 " in raw_request(srv.port, wrong)[0]
        # A read-only POST stays open when reads are open.
        found = httpx.post(f"{srv.url}{DB}/search", json={"query": "x"}, timeout=10)
        assert found.status_code == 200
    finally:
        srv.stop()


def test_a_1_gb_body_is_refused_while_the_server_stays_small(server: Server) -> None:
    head = (
        f"POST {DB}/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n"
    )
    status, _ = raw_request(server.port, head)
    assert " 413 " in status

    def stream() -> Iterator[bytes]:
        yield b'{"run_id": "big", "model_name": "bert", "error": "'
        block = b"e" * (1024 * 1024)
        for _ in range(200):  # 200 MiB, chunked: counted, cut at 64 MiB
            yield block
        yield b'"}'

    try:
        answer = httpx.post(
            f"{server.url}{DB}/runs",
            content=stream(),
            headers={"content-type": "application/json"},
            timeout=60,
        )
        assert answer.status_code == 413
    except httpx.HTTPError:
        pass  # the server may close the connection while the client still sends: also a refusal
    assert server.proc is not None
    rss = psutil.Process(server.proc.pid).memory_info().rss
    assert rss < 300 * 1024 * 1024, rss
    assert httpx.get(f"{server.url}{DB}/run/big", timeout=10).status_code == 404
