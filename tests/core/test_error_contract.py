"""Every operation documents its errors with the one ErrorBody model, and real errors fit it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.schemas import ErrorBody
from app.main import create_app
from tests.support import make_settings

ERROR_REF = "#/components/schemas/ErrorBody"
KEY = "k-contract-1"
JSON = {"content-type": "application/json"}


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (method, path, operation) for every operation of an OpenAPI document."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def error_refs(operation: dict[str, Any]) -> dict[int, str | None]:
    """Return each 4xx/5xx status of an operation and the schema ref its JSON body declares."""
    found = {}
    for status, response in operation["responses"].items():
        if int(status) >= 400:
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            found[int(status)] = schema.get("$ref")
    return found


@pytest.fixture
def keyed(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    """The app with API keys on writes."""
    settings = make_settings(tmp_path / "keyed", template_dbs, api_keys=[KEY])
    with TestClient(create_app(settings)) as client:
        yield client


OWN_403 = {"/api/test/run/{run_id}/artifacts/{artifact_id}", "/api/test/suites/{name}"}


def test_every_operation_declares_its_errors_with_the_error_model(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "ErrorBody" in spec["components"]["schemas"]
    seen = 0
    for method, path, operation in operations(spec):
        refs = error_refs(operation)
        if path == "/health":
            refs.pop(503)  # health's 503 is its own report, documented as such
        assert set(refs.values()) == {ERROR_REF}, (method, path, refs)
        expected = {400, 422}
        if "{" in path:
            expected.add(404)
        if method in {"post", "put", "patch"}:
            expected |= {409, 413}
        assert expected <= set(refs), (method, path, sorted(refs))
        assert 401 not in refs, f"{method} {path}: no keys, no 401"
        # A 403 without keys only where the route refuses for its own reason (a stored path
        # outside the results folder).
        assert 403 not in refs or path in OWN_403, f"{method} {path}: no keys, no 403"
        seen += 1
    assert seen > 50


def test_with_keys_every_write_documents_401_and_403(keyed: TestClient) -> None:
    spec = keyed.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    for method, path, operation in operations(spec):
        refs = error_refs(operation)
        # Writes need a key (searches read); so does the streamed export, an admin operation.
        if (method != "get" and not path.endswith("/search")) or path.endswith("/db/export"):
            assert {401, 403} <= set(refs), (method, path)
            assert operation["security"] == [{"ApiKey": []}], (method, path)
        else:
            assert 401 not in refs, (method, path)
            assert 403 not in refs or path in OWN_403, (method, path)
            assert "security" not in operation, (method, path)


def test_export_documents_its_unknown_table_400(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for prefix in ("/api/test/db", "/api/generator/db"):
        assert error_refs(spec["paths"][f"{prefix}/export"]["post"])[400] == ERROR_REF


def documented(spec: dict[str, Any], method: str, url: str, status: int) -> bool:
    """Return whether the operation that serves `url` documents `status`."""
    for path, item in spec["paths"].items():
        pattern = "^" + re.sub(r"{\w+}", "[^/]+", path) + "$"
        if re.match(pattern, url.split("?")[0]) and method.lower() in item:
            return str(status) in item[method.lower()]["responses"]
    return False


def check(spec: dict[str, Any], response: Any, status: int, code: str, route: bool = True) -> None:
    """Assert an error answer: its status, its code, the model, and the route documents it."""
    assert response.status_code == status, response.text
    body = ErrorBody.model_validate(response.json())
    assert body.code == code, response.text
    if route:
        method, url = response.request.method, response.request.url.path
        assert documented(spec, method, url, status), (method, url, status)


def test_real_errors_fit_the_model_and_are_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    db = "/api/test/db"
    check(spec, client.get(f"{db}/runs?limit=0"), 422, "validation_error")
    check(spec, client.get(f"{db}/runs?nope=1"), 422, "validation_error")
    bad = client.post(f"{db}/runs", content=b'{"model_name": ', headers=JSON)
    check(spec, bad, 422, "invalid_json")
    assert isinstance(bad.json()["detail"], list)
    surrogate = client.post(f"{db}/search", content=b'{"query": "\\ud800"}', headers=JSON)
    check(spec, surrogate, 422, "invalid_text")
    check(spec, client.get(f"{db}/run/nope"), 404, "not_found")
    check(spec, client.delete(f"{db}/run/nope"), 404, "not_found")
    client.post(f"{db}/batches", json={"batch_id": "b1"})
    check(spec, client.post(f"{db}/batches", json={"batch_id": "b1"}), 409, "batch_exists")
    table = client.post(f"{db}/export", json={"filename": "a.csv", "table": "nope"})
    check(spec, table, 400, "unknown_table")
    name = client.post(f"{db}/export", json={"filename": "../a.json"})
    check(spec, name, 400, "invalid_filename")
    big = client.post(f"{db}/search", content=b"x" * (5 << 20), headers=JSON)
    check(spec, big, 413, "body_too_large")
    # A body FastAPI cannot parse at all (a multipart without its boundary): 400 with a code.
    multipart = {"content-type": "multipart/form-data"}
    broken = client.post(f"{db}/import/junit?model_name=m", content=b"x", headers=multipart)
    check(spec, broken, 400, "malformed_body")
    assert "could not be parsed" in broken.json()["detail"]
    # Answers from no route at all still carry a code.
    check(spec, client.get("/api/nope"), 404, "not_found", route=False)
    check(spec, client.put("/health"), 405, "method_not_allowed", route=False)
    host = client.get(f"{db}/runs", headers={"host": "evil.example"})
    check(spec, host, 400, "invalid_host")


def test_key_errors_fit_the_model_and_are_documented(keyed: TestClient) -> None:
    spec = keyed.get("/openapi.json").json()
    url = "/api/test/db/batches"
    check(spec, keyed.post(url, json={"batch_id": "b2"}), 401, "unauthorized")
    wrong = keyed.post(url, json={"batch_id": "b2"}, headers={"x-api-key": "wrong"})
    check(spec, wrong, 403, "forbidden")
    check(spec, keyed.delete("/api/test/db/run/r", headers={"x-api-key": "no"}), 403, "forbidden")
    good = keyed.post(url, json={"batch_id": "b2"}, headers={"x-api-key": KEY})
    assert good.status_code == 201, good.text
