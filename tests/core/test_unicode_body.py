"""Lone UTF-16 surrogates in a JSON body are refused once, for every route, before parsing."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from app.core.unicode_body import has_lone_surrogate


@pytest.mark.parametrize(
    ("text", "lone"),
    [
        ("x\ud800y", True),
        ("\udc00", True),
        ("\ud800\ud800\udc00", True),
        ("\ud83d\ude00", False),  # a proper pair (an emoji) sent as escapes
        ("\\ud800", False),  # a backslash, then the letters "ud800"
        ("\\\ud800", True),  # a backslash, then a lone surrogate
        ("plain", False),
    ],
)
def test_lone_surrogate_escapes_are_found_and_pairs_are_not(text: str, lone: bool) -> None:
    assert has_lone_surrogate(json.dumps({"a": text}).encode()) is lone


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/test/db/runs"),
        ("POST", "/api/generator/db/tasks"),
        ("POST", "/api/generator/db/search"),
        ("PATCH", "/api/test/db/run/x"),
    ],
)
def test_a_body_with_a_lone_surrogate_is_a_422_and_writes_nothing(
    client: TestClient, method: str, path: str
) -> None:
    body = json.dumps({"model_name": "m\ud800", "query": "\udfff"})
    response = client.request(
        method, path, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_text"
    assert client.get("/api/test/db/runs").headers["X-Total-Count"] == "0"
    assert client.get("/api/generator/db/tasks").headers["X-Total-Count"] == "0"


def test_an_emoji_sent_as_an_escaped_pair_is_stored(client: TestClient) -> None:
    body = json.dumps({"run_id": "r1", "model_name": "m\U0001f600"})
    response = client.post(
        "/api/test/db/runs", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201
    assert response.json()["model_name"] == "m\U0001f600"
