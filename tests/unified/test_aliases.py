"""`/api/db/<x>/...` answers byte for byte as `/api/<x>/db/...`: methods, keys, limits, bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.unified.aliases import escapes
from tests.components.test_suite.support import run_doc
from tests.support import make_settings

KEY = "unified-key"
OK = {"X-API-Key": KEY}
SMALL = 4096


@pytest.fixture
def keyed(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    """The app with an API key on reads and writes and a small limit on small bodies."""
    settings: Settings = make_settings(
        tmp_path,
        template_dbs,
        api_keys=[KEY],
        protect_reads=True,
        max_small_body_bytes=SMALL,
        max_body_bytes=1024 * 1024,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def both(
    client: TestClient, component: str, method: str, sub: str, **kwargs: Any
) -> tuple[Any, Any]:
    """Send one request to the component's path, then the same to its alias; return both."""
    own = client.request(method, f"/api/{component}/db{sub}", **kwargs)
    alias = client.request(method, f"/api/db/{component}{sub}", **kwargs)
    return own, alias


def same(client: TestClient, component: str, method: str, sub: str, **kwargs: Any) -> int:
    """Assert both paths answer with the same status, headers and bytes; return the status."""
    own, alias = both(client, component, method, sub, **kwargs)
    assert alias.status_code == own.status_code, (sub, own.text, alias.text)
    assert alias.headers.multi_items() == own.headers.multi_items(), sub
    assert alias.content == own.content, sub
    return int(own.status_code)


def seed(client: TestClient) -> None:
    """Record two runs and two tasks through the recording API."""
    for run_id in ("r1", "r2"):
        doc = run_doc(run_id, tags={"team": "nlp"}, metrics={"cpu": {"latency_ms": 12.5}})
        assert client.post("/api/test/db/runs", json=doc, headers=OK).status_code == 201
    for task_id in ("t1", "t2"):
        doc = {"task_id": task_id, "model_name": "bert", "hardware": ["cpu"], "status": "running"}
        assert client.post("/api/generator/db/tasks", json=doc, headers=OK).status_code == 201


READS = [
    ("test", "/runs", {"limit": 1, "offset": 1}),
    ("test", "/runs", {"status": ["completed", "error"], "model_name": "bert-base-uncased"}),
    ("test", "/run/r1", {}),
    ("test", "/run/missing", {}),
    ("test", "/models/stats", {"days": 30}),
    ("test", "/hardware/stats", {}),
    ("test", "/batches", {}),
    ("test", "/flaky", {"days": 7}),
    ("test", "/runs", {"bogus": "1"}),  # unknown query parameter: the same 422
    ("test", "/runs", {"limit": "0"}),
    ("test", "/no-such-route", {}),
    ("generator", "/tasks", {"status": "running"}),
    ("generator", "/task/t1", {}),
    ("generator", "/task/missing", {}),
    ("generator", "/models/stats", {}),
    ("generator", "/tasks", {"nope": "x"}),
]


@pytest.mark.parametrize(("component", "sub", "params"), READS)
def test_reads_answer_byte_for_byte(
    keyed: TestClient, component: str, sub: str, params: dict[str, Any]
) -> None:
    seed(keyed)
    same(keyed, component, "GET", sub, params=params, headers=OK)
    # Without a key and with a wrong one: the same 401 / 403 (or 404 for no route).
    same(keyed, component, "GET", sub, params=params)
    same(keyed, component, "GET", sub, params=params, headers={"X-API-Key": "wrong"})


def test_writes_answer_byte_for_byte(keyed: TestClient) -> None:
    seed(keyed)
    # Idempotent writes: the second answer (through the alias) equals the first.
    patch = {"current_step": "collect", "progress": 1.0}
    assert same(keyed, "test", "PATCH", "/run/r1", json=patch, headers=OK) == 200
    assert same(keyed, "test", "PUT", "/run/r1/tags", json={"a": "b"}, headers=OK) == 200
    tags = {"c": "d"}
    assert (
        same(keyed, "test", "PUT", "/run/r1/tags", params={"merge": "true"}, json=tags, headers=OK)
        == 200
    )
    metrics = [{"name": "latency_ms", "value": 1.5, "unit": "ms"}]
    assert same(keyed, "test", "POST", "/run/r1/metrics", json=metrics, headers=OK) == 201
    assert same(keyed, "generator", "PATCH", "/task/t1", json={"progress": 0.5}, headers=OK) == 200
    # A re-post is an idempotent upsert: the same 201 answer. Then refusals: validation,
    # missing key, wrong key, unknown run, no such method.
    doc = run_doc("r1")
    assert same(keyed, "test", "POST", "/runs", json=doc, headers=OK) == 201
    assert same(keyed, "test", "POST", "/runs", json={"run_id": 1}, headers=OK) == 422
    assert same(keyed, "test", "POST", "/runs", json=doc) == 401
    assert same(keyed, "test", "POST", "/runs", json=doc, headers={"X-API-Key": "no"}) == 403
    assert same(keyed, "test", "PATCH", "/run/missing", json=patch, headers=OK) == 404
    assert same(keyed, "test", "DELETE", "/run/missing", headers=OK) == 404
    assert same(keyed, "test", "DELETE", "/run/r1") == 401
    assert same(keyed, "test", "PUT", "/runs", json={}, headers=OK) == 405
    assert same(keyed, "generator", "DELETE", "/task/missing", headers=OK) == 404
    task = {"task_id": "t1", "model_name": "bert", "hardware": ["cpu"], "status": "running"}
    assert same(keyed, "generator", "POST", "/tasks", json=task, headers=OK) in (201, 409)
    # Reads by POST: search follows the read rule on both paths.
    body = {"query": "r", "limit": 5}
    assert same(keyed, "test", "POST", "/search", json=body, headers=OK) == 200
    assert same(keyed, "test", "POST", "/search", json=body) == 401
    assert same(keyed, "generator", "POST", "/search", json=body, headers=OK) == 200
    assert same(keyed, "generator", "POST", "/search", json={"query": ""}, headers=OK) == 422


def test_deletes_answer_the_same(keyed: TestClient) -> None:
    seed(keyed)
    for own_path, alias_path, one, two in (
        ("/api/test/db/run/r1", "/api/db/test/run/r2", "r1", "r2"),
        ("/api/generator/db/task/t1", "/api/db/generator/task/t2", "t1", "t2"),
    ):
        own = keyed.delete(own_path, headers=OK)
        alias = keyed.delete(alias_path, headers=OK)
        assert own.status_code == alias.status_code == 200
        assert alias.headers.multi_items() == own.headers.multi_items()
        # Two rows deleted at two moments: equal but for the id and the timestamp.
        want, got = own.json(), alias.json()
        assert want.pop("timestamp") and got.pop("timestamp")
        assert str(got) == str(want).replace(one, two)
    assert keyed.get("/api/test/db/run/r2", headers=OK).status_code == 404
    assert keyed.get("/api/generator/db/task/t2", headers=OK).status_code == 404


def test_recording_prefer_and_body_limits_as_on_the_component_paths(keyed: TestClient) -> None:
    big = run_doc("big", cases=(200, 0, 0))  # > the small limit: only the large-body route
    assert len(str(big)) > SMALL
    minimal = {"X-API-Key": KEY, "Prefer": "return=minimal"}
    alias = keyed.post("/api/db/test/runs", json=big, headers=minimal)
    assert alias.status_code == 201, alias.text
    assert alias.headers["preference-applied"] == "return=minimal"
    assert keyed.get("/api/test/db/run/big", headers=OK).json()["results"]["tests_passed"] == 200
    filler = {"status": "completed", "error": "x" * (SMALL + 10)}
    assert same(keyed, "test", "POST", "/run/big/complete", json=filler, headers=OK) == 413
    assert same(keyed, "test", "POST", "/run/big/complete", json=filler) == 401  # key first
    lone = b'{"query": "\\ud800"}'
    head = {**OK, "content-type": "application/json"}
    assert same(keyed, "test", "POST", "/search", content=lone, headers=head) == 422


@pytest.mark.parametrize(
    "rest",
    ["/..", "/../../health", "/run/..", "/./runs", "/run/%2e%2e/x", "/run%2F..%2F..%2Fhealth"],
)
def test_dot_segments_never_reach_other_routes(client: TestClient, rest: str) -> None:
    response = asyncio.run(_raw_get(client, "/api/db/test" + rest))
    assert response[0] == 404
    assert b'"code":"not_found"' in response[1].replace(b" ", b"")


def test_escape_rule() -> None:
    assert escapes("/run/..") and escapes("/./x") and escapes("/..")
    assert not escapes("/run/v1.0/steps/a..b") and not escapes("/runs") and not escapes("")


def test_encoded_slash_stays_under_the_component(client: TestClient) -> None:
    run = run_doc("s1")
    assert client.post("/api/test/db/runs", json=run).status_code == 201
    step = {"status": "completed"}
    own = client.put("/api/test/db/run/s1/steps/a%2Fb", json=step)
    alias = client.put("/api/db/test/run/s1/steps/a%2Fb", json=step)
    assert own.status_code == alias.status_code == 200 and alias.content == own.content


async def _raw_get(client: TestClient, raw: str) -> tuple[int, bytes]:
    # Straight to the ASGI app: an HTTP client would normalise the dot segments away.
    from urllib.parse import unquote

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw),
        "raw_path": raw.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "state": {},
    }
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await client.app(scope, receive, send)  # type: ignore[arg-type]
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, body
