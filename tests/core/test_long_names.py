"""Names and file names at their documented limits answer 4xx or succeed, never 500."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.core.naming import MAX_SLUG, model_slug, module_filename


def test_long_model_names_give_distinct_file_names_under_255_bytes() -> None:
    a, b = "m" * 256, "m" * 255 + "n"
    assert module_filename(a) != module_filename(b)
    assert len(module_filename(a).encode()) <= 255
    assert len(model_slug(a)) == MAX_SLUG
    assert model_slug("bert-base") == "bert_base"


def test_running_a_256_character_model_without_a_module_is_a_404(client: TestClient) -> None:
    for length in (248, 252, 256):
        name = "m" * length
        run = client.post("/api/test/run", json={"model_name": name})
        assert run.status_code == 404, run.text
        assert run.json()["code"] == "no_test_module"
        batch = client.post("/api/test/batch", json={"model_names": [name]})
        assert batch.status_code in {201, 202, 404}, batch.text


def test_generating_a_256_character_model_name_writes_its_file(client: TestClient) -> None:
    name = "bert-" + "m" * 251
    answer = client.post("/api/generator/model", json={"model_name": name, "model_type": "bert"})
    assert answer.status_code < 500, answer.text


def test_export_file_names_up_to_255_characters_work(client: TestClient) -> None:
    for length in (251, 255):
        filename = "e" * (length - 8) + ".parquet"
        answer = client.post(
            "/api/test/db/export", json={"filename": filename, "table": "test_runs"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["filename"] == filename
