"""Errors: 404 for missing ids, 422 for invalid bodies (nothing written), API keys; never 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.components.test_suite.support import B, app_table_counts
from tests.support import make_settings

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, template_dbs: dict[str, Path]
) -> Iterator[TestClient]:
    """One app with one running run ("r1") and one batch ("b1"); tests must not change them."""
    settings = make_settings(tmp_path_factory.mktemp("errors"), template_dbs)
    # TestClient re-raises any server exception: a 500 fails the test that caused it.
    with TestClient(create_app(settings)) as client:
        body = {
            "run_id": "r1",
            "model_name": "m",
            "status": "running",
            "started_at": "2026-01-01T00:00:00Z",
        }
        assert client.post(f"{B}/runs", json=body).status_code == 201
        assert client.post(f"{B}/batches", json={"batch_id": "b1"}).status_code == 201
        yield client


MISSING = [
    ("GET", "/run/nope", None),
    ("PATCH", "/run/nope", {"progress": 0.5}),
    ("PUT", "/run/nope/steps/a", {}),
    ("POST", "/run/nope/metrics", [{"name": "x", "value": 1}]),
    ("PUT", "/run/nope/tags", {"a": "b"}),
    ("POST", "/run/nope/artifacts", [{"artifact_type": "log", "artifact_path": "/x"}]),
    ("PUT", "/run/nope/results", {"tests_passed": 1}),
    ("POST", "/run/nope/cases", [{"name": "t", "status": "passed"}]),
    ("POST", "/run/nope/complete", {}),
    ("DELETE", "/run/nope", None),
    ("GET", "/batch/nope", None),
    ("PUT", "/batch/nope/runs/r1", None),
    ("PUT", "/batch/b1/runs/nope", None),
    ("DELETE", "/batch/nope", None),
    ("POST", "/batches", {"run_ids": ["r1", "nope"]}),
]


@pytest.mark.parametrize(("method", "path", "body"), MISSING)
def test_missing_ids_are_404_with_a_json_detail(
    shared: TestClient, method: str, path: str, body: Any
) -> None:
    before = app_table_counts(shared)
    response = shared.request(method, f"{B}{path}", json=body)
    assert response.status_code == 404, response.text
    payload = response.json()
    assert payload["code"] == "not_found" and "nope" in payload["detail"]
    assert app_table_counts(shared) == before


RUN = "/runs"
INVALID: list[tuple[str, str, Any]] = [
    # unknown fields
    ("POST", RUN, {"model_name": "m", "colour": "red"}),
    (
        "POST",
        RUN,
        {
            "model_name": "m",
            "results": {"test_details": [{"name": "t", "status": "passed", "x": 1}]},
        },
    ),
    ("POST", RUN, {"model_name": "m", "steps": [{"step_name": "a", "bogus": 1}]}),
    ("POST", RUN, {"model_name": "m", "metrics": [{"name": "a", "value": 1, "extra": 2}]}),
    ("PATCH", "/run/r1", {"status": "running", "colour": "red"}),
    ("PUT", "/run/r1/steps/a", {"state": "done"}),
    ("POST", "/batches", {"batch_id": "x", "members": []}),
    # bad statuses
    ("POST", RUN, {"model_name": "m", "status": "done"}),
    ("PATCH", "/run/r1", {"status": "finished"}),
    ("PUT", "/run/r1/steps/a", {"status": "ok"}),
    ("POST", "/run/r1/cases", [{"name": "t", "status": "green"}]),
    ("POST", "/run/r1/complete", {"status": "queued"}),
    # numbers out of range
    ("POST", RUN, {"model_name": "m", "duration": -1}),
    ("PATCH", "/run/r1", {"duration": -0.5}),
    ("PUT", "/run/r1/steps/a", {"duration": -1}),
    ("POST", "/run/r1/cases", [{"name": "t", "status": "passed", "duration_ms": -1}]),
    ("POST", RUN, {"model_name": "m", "progress": 1.5}),
    ("POST", RUN, {"model_name": "m", "timeout": 0}),
    ("POST", RUN, {"model_name": "m", "timeout": 10**12}),
    ("PATCH", "/run/r1", {"timeout": 2**31}),
    ("POST", RUN, {"model_name": "m", "results": {"tests_passed": 10**12}}),
    ("PUT", "/run/r1/results", {"tests_failed": 2**31}),
    ("PUT", "/run/r1/results", {"tests_skipped": -1}),
    ("POST", RUN, {"model_name": "m", "results": {"x": 2**64}}),
    # nulls where a run always has a value
    ("POST", RUN, {"model_name": None}),
    ("POST", RUN, {"model_name": "m", "status": None}),
    ("POST", RUN, {"model_name": "m", "hardware": None}),
    ("PATCH", "/run/r1", {"progress": None}),
    ("PATCH", "/run/r1", {"model_name": None}),
    # shapes
    ("POST", RUN, {}),
    ("POST", RUN, []),
    ("POST", RUN, "model"),
    ("POST", RUN, {"model_name": ""}),
    ("POST", RUN, {"model_name": "m" * 257}),
    ("POST", RUN, {"model_name": "m", "run_id": "has space"}),
    ("POST", RUN, {"model_name": "m", "run_id": "x" * 65}),
    ("POST", RUN, {"model_name": "m", "hardware": []}),
    ("POST", RUN, {"model_name": "m", "hardware": ["cpu", "cpu"]}),
    ("POST", RUN, {"model_name": "m", "hardware": ["c p u"]}),
    ("POST", RUN, {"model_name": "m", "hardware": "cpu"}),
    ("POST", RUN, {"model_name": "m", "tags": {"": "x"}}),
    ("POST", RUN, {"model_name": "m", "tags": {"a": 1}}),
    ("POST", RUN, {"model_name": "m", "steps": [{"step_name": "a"}, {"step_name": "a"}]}),
    (
        "POST",
        RUN,
        {
            "model_name": "m",
            "artifacts": [
                {"artifact_type": "l", "artifact_path": "/a"},
                {"artifact_type": "l", "artifact_path": "/a"},
            ],
        },
    ),
    ("POST", RUN, {"model_name": "m", "started_at": "not a time"}),
    ("POST", RUN, {"model_name": "m", "started_at": "9999-12-31T23:59:59-05:00"}),
    ("POST", RUN, {"model_name": "m", "results": {"performance_metrics": {"cpu": {"x": "fast"}}}}),
    ("POST", RUN, {"model_name": "m", "results": {"performance_metrics": {"c p u": {"x": 1}}}}),
    ("POST", "/run/r1/metrics", {"name": "x", "value": 1}),
    ("POST", "/run/r1/metrics", [{"name": "x", "value": "1e3x"}]),
    ("PUT", "/run/r1/tags", ["a"]),
    ("POST", "/batches", {"run_ids": ["bad id"]}),
    ("POST", "/import", {"tables": {}}),
]

RAW: list[tuple[str, str, str]] = [
    ("POST", RUN, '{"model_name": "m", "metrics": [{"name": "x", "value": NaN}]}'),
    ("POST", "/run/r1/metrics", '[{"name": "x", "value": Infinity}]'),
    ("POST", "/run/r1/metrics", '[{"name": "x", "value": -1e400}]'),
    ("POST", RUN, '{"model_name": "m", "duration": Infinity}'),
    ("POST", RUN, '{"model_name": "m", "duration": 1e400}'),
    ("PATCH", "/run/r1", '{"progress": NaN}'),
    ("PUT", "/run/r1/steps/a", '{"duration": Infinity}'),
    ("PUT", "/run/r1/steps/a", '{"progress": NaN}'),
    ("POST", "/run/r1/cases", '[{"name": "t", "status": "passed", "duration_ms": NaN}]'),
    ("POST", RUN, '{"model_name": "m", "results": {"performance_metrics": {"cpu": {"x": NaN}}}}'),
    ("POST", RUN, '{"model_name": "m", "results": {"performance_metrics": {"cpu": {"x": 1e999}}}}'),
    ("PUT", "/run/r1/results", '{"extra": {"deep": [1, NaN]}}'),
    ("POST", RUN, '{"model_name": "m\\ud800"}'),
    ("PUT", "/run/r1/tags", '{"a": "\\udfff"}'),
    ("PUT", "/run/r1/tags", '{"\\udfff": "a"}'),
    ("POST", "/run/r1/metrics", '[{"name": "\\ud800x", "value": 1}]'),
    ("POST", "/run/r1/metrics", '[{"name": "x", "value": 1, "unit": "\\ud800"}]'),
    ("PUT", "/run/r1/steps/a", '{"error": "\\ud800"}'),
    ("POST", "/run/r1/cases", '[{"name": "\\ud800", "status": "passed"}]'),
    ("POST", "/run/r1/artifacts", '[{"artifact_type": "x", "artifact_path": "\\ud800"}]'),
    ("POST", "/batches", '{"description": "\\ud800"}'),
    ("POST", "/import", '{"format": "\\ud800", "component": "x", "tables": {}}'),
    ("POST", "/run/r1/complete", '{"error": "\\ud800"}'),
    ("POST", "/search", '{"query": "\\ud800"}'),
    ("POST", "/export", '{"filename": "a\\ud800.json"}'),
    ("POST", "/export", '{"filename": "a.json", "table": "\\ud800"}'),
    ("POST", RUN, '{"model_name": "m", '),
    ("POST", RUN, "not json"),
]


@pytest.mark.parametrize(("method", "path", "body"), INVALID)
def test_invalid_bodies_are_422_and_change_nothing(
    shared: TestClient, method: str, path: str, body: Any
) -> None:
    before = app_table_counts(shared)
    run = shared.get(f"{B}/run/r1").json()
    response = shared.request(method, f"{B}{path}", json=body)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()
    assert app_table_counts(shared) == before
    assert shared.get(f"{B}/run/r1").json() == run


@pytest.mark.parametrize(("method", "path", "raw"), RAW)
def test_non_finite_numbers_and_broken_text_are_422(
    shared: TestClient, method: str, path: str, raw: str
) -> None:
    before = app_table_counts(shared)
    response = shared.request(method, f"{B}{path}", content=raw, headers=JSON)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()
    assert app_table_counts(shared) == before


def test_validation_errors_keep_fastapis_shape(shared: TestClient) -> None:
    response = shared.post(f"{B}/runs", json={"model_name": "m", "status": "done"})
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "status"] and "msg" in error


def test_conflicts_carry_detail_and_code(shared: TestClient) -> None:
    response = shared.post(f"{B}/batches", json={"batch_id": "b1"})
    assert response.status_code == 409
    assert set(response.json()) == {"detail", "code"}


# --- API keys --------------------------------------------------------------------------------

WRITES = [
    ("POST", "/runs", {"run_id": "new", "model_name": "m"}),
    ("PATCH", "/run/r1", {"progress": 0.5}),
    ("PUT", "/run/r1/steps/a", {}),
    ("POST", "/run/r1/metrics", [{"name": "x", "value": 1}]),
    ("PUT", "/run/r1/tags", {"a": "b"}),
    ("POST", "/run/r1/artifacts", [{"artifact_type": "log", "artifact_path": "/x"}]),
    ("PUT", "/run/r1/results", {"tests_passed": 1}),
    ("POST", "/run/r1/cases", [{"name": "t", "status": "passed"}]),
    ("POST", "/run/r1/complete", {}),
    ("POST", "/batches", {"batch_id": "b2"}),
    ("PUT", "/batch/b1/runs/r1", None),
    ("POST", "/export", {"filename": "x.json"}),
    ("GET", "/export", None),
    (
        "POST",
        "/import",
        {"format": "accelerate-tracking-export", "component": "test_suite", "tables": {}},
    ),
    ("DELETE", "/batch/b1", None),
    ("DELETE", "/run/r1", None),
]
READS = [
    ("GET", "/runs", None),
    ("GET", "/run/r1", None),
    ("GET", "/batches", None),
    ("GET", "/batch/b1", None),
    ("GET", "/models/stats", None),
    ("GET", "/hardware/stats", None),
    ("GET", "/performance", None),
    ("POST", "/search", {"query": "m"}),
]


def keyed_client(tmp_path: Path, template_dbs: dict[str, Path], **extra: Any) -> TestClient:
    settings = make_settings(tmp_path, template_dbs, api_keys=["k1"], **extra)
    return TestClient(create_app(settings))


def test_writes_need_a_valid_key_and_reads_stay_open(
    tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    with keyed_client(tmp_path, template_dbs) as client:
        ok = {"X-API-Key": "k1"}
        client.post(f"{B}/runs", json={"run_id": "r1", "model_name": "m"}, headers=ok)
        client.post(f"{B}/batches", json={"batch_id": "b1"}, headers=ok)
        for method, path, body in WRITES:
            before = app_table_counts(client)
            missing = client.request(method, f"{B}{path}", json=body)
            assert missing.status_code == 401, (method, path)
            assert missing.json()["code"] == "unauthorized"
            wrong = client.request(method, f"{B}{path}", json=body, headers={"X-API-Key": "k2"})
            assert wrong.status_code == 403, (method, path)
            assert wrong.json()["code"] == "forbidden"
            assert app_table_counts(client) == before, (method, path)
            allowed = client.request(method, f"{B}{path}", json=body, headers=ok)
            assert allowed.status_code < 300, (method, path, allowed.text)
        for method, path, body in READS:
            response = client.request(method, f"{B}{path}", json=body)
            assert response.status_code in (200, 404), (method, path)


def test_protect_reads_closes_reads_too(tmp_path: Path, template_dbs: dict[str, Path]) -> None:
    with keyed_client(tmp_path, template_dbs, protect_reads=True) as client:
        client.post(
            f"{B}/runs", json={"run_id": "r1", "model_name": "m"}, headers={"X-API-Key": "k1"}
        )
        client.post(f"{B}/batches", json={"batch_id": "b1"}, headers={"X-API-Key": "k1"})
        for method, path, body in READS:
            assert client.request(method, f"{B}{path}", json=body).status_code == 401
            wrong = client.request(method, f"{B}{path}", json=body, headers={"X-API-Key": "x"})
            assert wrong.status_code == 403
            ok = client.request(method, f"{B}{path}", json=body, headers={"X-API-Key": "k1"})
            assert ok.status_code == 200, (method, path, ok.text)


def test_validation_errors_render_inputs_that_utf8_cannot_encode() -> None:
    """Core: app/main.py `_invalid` echoes inputs; a lone surrogate must not turn 422 into 500."""
    from fastapi.exceptions import RequestValidationError

    from app.main import _invalid

    error = {
        "type": "string_unicode",
        "loc": ("body", "model_name"),
        "msg": "bad text",
        "input": "a\ud800b",
    }
    try:
        response = _invalid(None, RequestValidationError([error]))  # type: ignore[arg-type]
    except UnicodeEncodeError as exc:
        pytest.fail(
            "CORE BUG app/main.py:92-106 (_finite/_invalid): a validation error whose input holds "
            "a lone UTF-16 surrogate cannot be encoded, so the 422 becomes a 500 "
            f"({exc}); fix: in _finite also replace surrogates in str values and dict keys, e.g. "
            "re.sub('[\\ud800-\\udfff]', '\\ufffd', value). Generator routes (POST "
            "/api/generator/db/tasks, /search) answer 500 today."
        )
    assert response.status_code == 422
