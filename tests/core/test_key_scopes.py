"""Key scopes: read < write < admin, from APP_API_KEYS or a hashed keys file re-read on change."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.__main__ import main
from app.core.config import Settings
from app.core.errors import StartupError
from app.core.keys import KeyRing, hash_key, parse_file, required_scope
from app.main import create_app
from tests.core.test_body_guard import raw_request
from tests.support import Server, make_settings

DB = "/api/test/db"
READ, WRITE, ADMIN = ({"X-API-Key": k} for k in ("r-key", "w-key", "a-key"))
RUN = {"run_id": "r1", "model_name": "bert", "hardware": ["cpu"], "status": "running"}


def scoped(tmp_path: Path, template_dbs: dict[str, Path], **extra: object) -> TestClient:
    """Return a client on an app with a read, a write and an admin key (and reads protected)."""
    settings = make_settings(
        tmp_path,
        template_dbs,
        api_keys=["r-key:read", "w-key:write", "a-key:admin"],
        protect_reads=True,
        backup_dir=tmp_path / "backups",
        **extra,
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    with scoped(tmp_path, template_dbs) as test_client:
        yield test_client


def test_each_scope_does_what_it_may_and_no_more(client: TestClient) -> None:
    assert client.get(f"{DB}/runs").status_code == 401
    assert client.get(f"{DB}/runs", headers=READ).status_code == 200
    refused = client.post(f"{DB}/runs", json=RUN, headers=READ)
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_scope"
    assert "write scope" in refused.json()["detail"]
    assert client.post(f"{DB}/runs", json=RUN, headers=WRITE).status_code == 201
    assert client.post(f"{DB}/search", json={"query": "bert"}, headers=READ).status_code == 200
    for method, path, body in (
        ("DELETE", f"{DB}/run/r1", None),
        ("GET", f"{DB}/export", None),
        ("POST", f"{DB}/import", {"runs": []}),
        ("POST", f"{DB}/query", {"sql": "SELECT 1"}),
        ("POST", f"{DB}/retention", {"older_than_days": 30}),
        ("POST", f"{DB}/backup", {}),
        ("POST", "/api/db/test/query", {"sql": "SELECT 1"}),  # the alias too
    ):
        answer = client.request(method, path, json=body, headers=WRITE)
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["code"] == "insufficient_scope", (method, path)
    assert client.post(f"{DB}/query", json={"sql": "SELECT 1"}, headers=ADMIN).status_code == 200
    assert client.delete(f"{DB}/run/r1", headers=ADMIN).status_code == 200
    unknown = client.get(f"{DB}/runs", headers={"X-API-Key": "nope"})
    assert unknown.status_code == 403 and unknown.json()["code"] == "forbidden"


def _routes(client: TestClient) -> list[tuple[str, str]]:
    found = []
    schema = client.get("/openapi.json", headers=READ).json()
    for template, operations in schema["paths"].items():
        path = re.sub(r"\{[^}]+\}", "zz", template)
        for method in sorted(m.upper() for m in operations):
            if method in {"POST", "PUT", "PATCH", "DELETE"} or path.endswith("/export"):
                found.append((method, path))
    return found


def test_every_state_changing_route_needs_its_scope(client: TestClient) -> None:
    routes = _routes(client)
    admin = [(m, p) for m, p in routes if required_scope(m, p) == "admin"]
    # Every delete, import, export, SQL, retention and backup route of both components.
    assert len([p for m, p in admin if m == "DELETE"]) == 4, admin
    for word in ("import", "export", "query", "retention", "backup", "import/junit"):
        assert {p for _, p in admin if p.endswith(f"/{word}")} >= {
            f"/api/test/db/{word}",
            *([f"/api/generator/db/{word}"] if word != "import/junit" else []),
        }, word
    for method, path in routes:
        needed = required_scope(method, path)
        by_read = client.request(method, path, json={}, headers=READ)
        by_write = client.request(method, path, json={}, headers=WRITE)
        if needed == "read":  # a search body
            assert by_read.status_code not in (401, 403), (method, path)
            continue
        assert by_read.status_code == 403, (method, path, by_read.text)
        assert by_read.json()["code"] == "insufficient_scope", (method, path)
        if needed == "admin":
            assert by_write.status_code == 403, (method, path, by_write.text)
            assert by_write.json()["code"] == "insufficient_scope", (method, path)
        else:
            assert by_write.status_code not in (401, 403), (method, path, by_write.text)
        by_admin = client.request(method, path, json={}, headers=ADMIN)
        assert by_admin.status_code not in (401, 403), (method, path, by_admin.text)


def test_a_bare_key_is_an_admin_key_and_a_misspelt_scope_is_refused(
    tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    settings = make_settings(tmp_path, template_dbs, api_keys=["k1"])
    with TestClient(create_app(settings)) as client:
        assert client.post(f"{DB}/runs", json=RUN, headers={"X-API-Key": "k1"}).status_code == 201
        assert client.delete(f"{DB}/run/r1", headers={"X-API-Key": "k1"}).status_code == 200
    with pytest.raises(ValidationError, match="scopes are read, write, admin"):
        Settings(api_keys="k1:wirte")  # type: ignore[arg-type]
    assert KeyRing(["a:b:write"]).scope_of("a:b") == "write"
    assert KeyRing(["a:b:write"]).scope_of("a:b:write") is None


def test_the_websocket_follows_the_scopes(client: TestClient) -> None:
    assert client.post(f"{DB}/runs", json=RUN, headers=WRITE).status_code == 201
    with client.websocket_connect("/api/test/ws/r1?api_key=r-key") as ws:
        assert ws.receive_json()["type"] == "status"  # a read key may subscribe
        ws.send_json({"type": "cancel"})
        message = ws.receive_json()
        while message["type"] != "error":
            message = ws.receive_json()
        assert message["code"] == "insufficient_scope"
        ws.send_json({"type": "auth", "key": "w-key"})
        message = ws.receive_json()
        while message["type"] != "auth":
            message = ws.receive_json()
        ws.send_json({"type": "cancel"})
        message = ws.receive_json()
        while message["type"] not in ("cancel", "error"):
            message = ws.receive_json()
        assert message["type"] == "cancel", message


def write_keys(path: Path, *lines: str) -> None:
    """Replace the keys file at once (a new file moved over the old one)."""
    partial = path.with_name(path.name + ".new")
    partial.write_text("# keys\n\n" + "\n".join(lines) + "\n")
    os.replace(partial, path)


def test_the_keys_file_holds_hashes_and_is_re_read_without_a_restart(
    tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    keys = tmp_path / "keys.txt"
    write_keys(keys, f"{hash_key('ci-key')} write ci", f"{hash_key('ops-key')} admin ops team")
    assert "ci-key" not in keys.read_text()
    settings = make_settings(tmp_path, template_dbs, api_keys_file=keys)
    with TestClient(create_app(settings)) as client:
        ci, ops, new = ({"X-API-Key": k} for k in ("ci-key", "ops-key", "new-key"))
        assert client.post(f"{DB}/runs", json=RUN).status_code == 401
        assert client.post(f"{DB}/runs", json=RUN, headers=ci).status_code == 201
        assert client.delete(f"{DB}/run/r1", headers=ci).json()["code"] == "insufficient_scope"
        assert client.post(f"{DB}/runs", json=RUN, headers=new).status_code == 403
        # Revoke ci-key, add new-key: the next request sees the change.
        write_keys(keys, f"{hash_key('new-key')} write", f"{hash_key('ops-key')} admin")
        assert client.post(f"{DB}/runs", json=RUN, headers=ci).json()["code"] == "forbidden"
        assert client.put(f"{DB}/run/r1/tags", json={"a": "b"}, headers=new).status_code == 200
        # A broken file keeps the last good keys (neither open nor locked out).
        write_keys(keys, "not a key line")
        assert client.put(f"{DB}/run/r1/tags", json={"a": "c"}, headers=new).status_code == 200
        keys.unlink()
        assert client.delete(f"{DB}/run/r1", headers=ops).status_code == 200


def test_a_bad_keys_file_stops_the_start(tmp_path: Path, template_dbs: dict[str, Path]) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("sha256:abc write\n")
    settings = make_settings(tmp_path, template_dbs, api_keys_file=keys)
    for broken, message in (
        (settings, r"APP_API_KEYS_FILE: .*keys.txt:1: expected `sha256:<64 hex"),
        (make_settings(tmp_path / "m", template_dbs, api_keys_file=tmp_path / "no.txt"), "no.txt"),
    ):
        app = create_app(broken)
        try:
            with pytest.raises(StartupError, match=message):
                app.startup()  # what the lifespan runs: uvicorn reports it as one sentence
        finally:
            app.shutdown()


def test_hash_key_prints_a_keys_file_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash-key", "s3cret", "--scope", "admin", "--name", "ops"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"{hash_key('s3cret')} admin ops"
    (entry,) = parse_file(line, "stdin")
    assert entry.scope == "admin" and entry.name == "ops"
    assert main(["hash-key", "--new", "--scope", "write"]) == 0
    out = capsys.readouterr().out.splitlines()
    key = out[0].rsplit(" ", 1)[1]
    assert out[1] == f"{hash_key(key)} write"


def test_the_body_guard_refuses_a_scope_before_reading_the_body(tmp_path: Path) -> None:
    srv = Server(tmp_path, {"APP_API_KEYS": "w-key:write,a-key:admin"}).start()
    try:
        head = (
            f"POST {DB}/import HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: w-key\r\n"
            "Content-Type: application/json\r\nContent-Length: 314572800\r\n\r\n"
        )
        status, took = raw_request(srv.port, head)
        assert " 403 " in status and took < 5
        assert " 413 " in raw_request(srv.port, head.replace("w-key", "a-key"))[0]
    finally:
        srv.stop()
