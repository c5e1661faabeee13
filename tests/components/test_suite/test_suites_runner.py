"""Suites: a scratch repository's own suite runs through the API in its own virtualenv."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.components.test_suite.scratch_repo import (
    FAKE_TORCH,
    make_repo,
    make_venv,
    suites_toml,
)
from tests.components.test_suite.support import parse_junit
from tests.support import make_settings

TERMINAL = {"completed", "error", "timeout", "cancelled"}


@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One scratch repository, one venv with pytest and httpx only, one bare venv."""
    folder = tmp_path_factory.mktemp("scratch")
    repo = make_repo(folder / "repo")
    python = make_venv(folder / "venv", ["pytest", "httpx"])
    bare = make_venv(folder / "bare", [])
    return {"repo": repo, "python": python, "bare": bare}


@pytest.fixture
def suite_client(
    tmp_path: Path, template_dbs: dict[str, Path], scratch: dict[str, Path]
) -> Iterator[TestClient]:
    """The app with a suites file naming the scratch repository."""
    extra = tmp_path / "extra-path"
    extra.mkdir()
    suites_file = tmp_path / "suites.toml"
    suites_file.write_text(suites_toml(scratch["repo"], scratch["python"], scratch["bare"], extra))
    settings = make_settings(tmp_path / "app", template_dbs, suites_file=suites_file)
    with TestClient(create_app(settings)) as client:
        yield client


def start(client: TestClient, **body: Any) -> str:
    """Start a run and return its id."""
    response = client.post("/api/test/run", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


def follow(client: TestClient, run_id: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Poll a run's status until it ends; return every status seen."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/test/status/{run_id}").json()
        seen.append(status)
        if status["status"] in TERMINAL:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end: {seen[-1]}")


def test_the_interpreter_has_pytest_but_not_the_server(scratch: dict[str, Path]) -> None:
    check = "import pytest, httpx\ntry:\n import fastapi\nexcept ImportError: print('no server')"
    out = subprocess.run(
        [str(scratch["python"]), "-c", check], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "no server"


def test_a_repository_suite_runs_under_its_own_config_with_every_outcome_per_device(
    suite_client: TestClient, scratch: dict[str, Path]
) -> None:
    run_id = start(suite_client, suite="mypkg", model_name="tiny-bert", hardware=["cpu", "cuda"])
    seen = follow(suite_client, run_id)
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress), progress
    assert seen[-1]["status"] == "completed" and seen[-1]["progress"] == 1.0
    detail = suite_client.get(f"/api/test/results/{run_id}").json()
    cases = {c["name"]: c for c in detail["results"]["test_details"]}
    assert {c["hardware"] for c in cases.values()} == {"cpu"}
    assert {n.split("::")[-1]: c["status"] for n, c in cases.items()} == {
        "test_scale": "passed",
        "test_loads_on_the_device": "passed",  # its conftest fixtures, package, env and --model
        "test_marked_slow": "passed",  # the project's marker, under --strict-markers
        "test_fails_on_purpose": "failed",
        "test_skipped": "skipped",
    }
    assert all(n.startswith("tests/test_core.py::") for n in cases)
    steps = {s["step_name"]: s for s in detail["steps"]}
    absent = steps["device @ cuda"]
    assert absent["status"] == "unavailable"
    assert "torch is not installed" in absent["error"]
    assert not [s for s in steps if s.endswith("@ cuda") and s != "device @ cuda"]
    assert detail["tags"]["suite"] == "mypkg"
    metrics = [(m["name"], m["value"], m["hardware"]) for m in detail["metrics"]]
    assert metrics == [("load_ms", 2.5, "cpu")]
    junit = parse_junit(_artifact_file(suite_client, run_id, "junit", "application/xml"))
    assert (junit["passed"], junit["failures"], junit["skipped"]) == (3, 1, 1)
    log = _artifact_file(suite_client, run_id, "log", "text/plain; charset=utf-8")
    assert "PytestUnknownMarkWarning" not in log.read_text()
    saved = _artifact_file(suite_client, run_id, "result_file", "application/json")
    assert json.loads(saved.read_text())["run_id"] == run_id
    page = suite_client.get(f"/runs/{run_id}").text  # the dashboard links every download
    for entry in suite_client.get(f"/api/test/run/{run_id}/artifacts").json():
        assert f'href="{entry["download_url"]}"' in page


def _artifact_file(client: TestClient, run_id: str, kind: str, content_type: str) -> Path:
    """Download a run's artifact of a kind through the API; check it is the stored file."""
    listed = client.get(f"/api/test/run/{run_id}/artifacts").json()
    entry = next(a for a in listed if a["artifact_type"] == kind)
    response = client.get(entry["download_url"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    path = Path(entry["artifact_path"])
    assert response.content == path.read_bytes()
    return path


def test_a_run_whose_only_device_is_absent_ends_in_error_and_never_passes(
    suite_client: TestClient,
) -> None:
    run_id = start(suite_client, suite="mypkg", model_name="tiny-gpt", hardware=["cuda"])
    final = follow(suite_client, run_id)[-1]
    assert final["status"] == "error"
    assert final["error"].startswith("no requested device is available: cuda:")
    detail = suite_client.get(f"/api/test/results/{run_id}").json()
    assert detail["tests_passed"] == 0 and detail["results"]["test_details"] == []
    assert [s["status"] for s in detail["steps"]] == ["unavailable"]


def test_a_device_that_appears_is_seen_without_a_restart_and_then_runs(
    tmp_path: Path, suite_client: TestClient
) -> None:
    before = {h["name"]: h for h in suite_client.get("/api/test/hardware?suite=mypkg-gpu").json()}
    assert before["cuda"]["available"] is False and before["cpu"]["available"] is True
    (tmp_path / "extra-path" / "torch.py").write_text(FAKE_TORCH)
    cached = suite_client.get("/api/test/hardware?suite=mypkg-gpu").json()
    assert {h["name"]: h for h in cached}["cuda"] == before["cuda"]  # within the TTL
    fresh = suite_client.get("/api/test/hardware?suite=mypkg-gpu&refresh=true").json()
    cuda = {h["name"]: h for h in fresh}["cuda"]
    assert cuda["available"] is True and cuda["detail"] == "1 CUDA device(s)"
    assert cuda["checked_at"] > before["cuda"]["checked_at"]
    run_id = start(suite_client, suite="mypkg-gpu", model_name="m", hardware=["cuda", "cuda:1"])
    assert follow(suite_client, run_id)[-1]["status"] == "completed"
    detail = suite_client.get(f"/api/test/results/{run_id}").json()
    on_cuda = [c for c in detail["results"]["test_details"] if c["hardware"] == "cuda"]
    assert len(on_cuda) == 4  # the suite's own `-m "not slow"` deselected one
    missing = {s["step_name"]: s for s in detail["steps"]}["device @ cuda:1"]
    assert missing["status"] == "unavailable" and "1 device(s) seen" in missing["error"]


def test_requests_pick_a_suite_never_a_path_and_are_refused_clearly(
    suite_client: TestClient,
) -> None:
    def post(**body: Any) -> tuple[int, dict[str, Any]]:
        response = suite_client.post("/api/test/run", json=body)
        return response.status_code, response.json()

    status, body = post(suite="nope", model_name="tiny-bert")
    assert (status, body["code"]) == (404, "unknown_suite") and "mypkg" in body["detail"]
    status, body = post(suite="mypkg", model_name="tiny-bert", hardware=["mps"])
    assert (status, body["code"]) == (400, "device_not_allowed")
    status, body = post(suite="mypkg", model_name="other")
    assert (status, body["code"]) == (404, "model_not_in_suite")
    status, body = post(suite="bare", model_name="x")
    assert (status, body["code"]) == (409, "no_pytest") and "installs nothing" in body["detail"]
    for field in ({"root": "/tmp"}, {"python": "/usr/bin/python3"}, {"args": ["-x"]}):
        status, _ = post(suite="mypkg", model_name="tiny-bert", **field)
        assert status == 422
    status, body = post(suite="../etc", model_name="x")
    assert status == 422
    batch = suite_client.post(
        "/api/test/batch", json={"suite": "mypkg", "model_names": ["tiny-bert", "other"]}
    )
    assert batch.status_code == 404 and batch.json()["code"] == "model_not_in_suite"
    assert suite_client.get("/api/test/runs").json() == []


def test_suites_and_models_list_what_each_suite_can_run(
    suite_client: TestClient, scratch: dict[str, Path]
) -> None:
    suites = {s["name"]: s for s in suite_client.get("/api/test/suites").json()}
    assert list(suites) == ["generated", "mypkg", "mypkg-gpu", "bare"]
    mypkg = suite_client.get("/api/test/suites/mypkg").json()
    assert mypkg == suites["mypkg"]
    assert mypkg["python"] == str(scratch["python"])  # the venv folder, resolved
    assert mypkg["root"] == str(scratch["repo"].resolve()) and mypkg["timeout"] == 120
    assert suites["generated"]["builtin"] is True and suites["generated"]["models"] is None
    assert suites["mypkg-gpu"]["env"]["HF_TOKEN"] == "***"  # a secret's value is never shown
    assert suites["mypkg-gpu"]["env"]["MYPKG_MODEL"] == "{model_name}"
    missing = suite_client.get("/api/test/suites/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_suite"
    models = suite_client.get("/api/test/models?suite=mypkg").json()
    assert [(m["model_name"], m["suite"], m["last_run_id"]) for m in models] == [
        ("tiny-bert", "mypkg", None),
        ("tiny-gpt", "mypkg", None),
    ]


def test_an_edited_suites_file_is_read_again_and_a_broken_one_is_a_clear_503(
    tmp_path: Path, template_dbs: dict[str, Path], scratch: dict[str, Path]
) -> None:
    suites_file = tmp_path / "suites.toml"
    suites_file.write_text(f'[suites.one]\nroot = "{scratch["repo"]}"\n')
    settings = make_settings(tmp_path / "app", template_dbs, suites_file=suites_file)
    with TestClient(create_app(settings)) as client:
        assert [s["name"] for s in client.get("/api/test/suites").json()] == ["generated", "one"]
        suites_file.write_text(f'[suites.two]\nroot = "{scratch["repo"]}"\nbogus = 1\n')
        response = client.get("/api/test/suites")
        assert response.status_code == 503
        assert response.json()["code"] == "suites_file_invalid"
        assert "bogus" in response.json()["detail"]
        suites_file.write_text(f'[suites.two]\nroot = "{scratch["repo"]}"\nargs = ["{{x}}"]\n')
        assert "known placeholders" in client.get("/api/test/suites").json()["detail"]
        suites_file.write_text(f'[suites.two]\nroot = "{scratch["repo"]}"\n')
        assert [s["name"] for s in client.get("/api/test/suites").json()] == ["generated", "two"]


def test_artifacts_outside_the_results_folder_are_refused_and_keys_are_honoured(
    tmp_path: Path, template_dbs: dict[str, Path]
) -> None:
    settings: Settings = make_settings(
        tmp_path / "app", template_dbs, api_keys=["k1"], protect_reads=True
    )
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    inside = settings.folder("results") / "r1" / "notes.txt"
    inside.parent.mkdir(parents=True)
    inside.write_text("hello")
    key = {"X-API-Key": "k1"}
    with TestClient(create_app(settings)) as client:
        doc = {
            "run_id": "r1",
            "model_name": "m",
            "artifacts": [
                {"artifact_type": "log", "artifact_path": str(outside)},
                {"artifact_type": "notes", "artifact_path": str(inside)},
                {"artifact_type": "gone", "artifact_path": str(inside.with_name("gone.txt"))},
                {"artifact_type": "escape", "artifact_path": "r1/../../../secret.txt"},
                # "~user" of no user: expanding it raises (was a 500 found by the fuzz run)
                {"artifact_type": "nobody", "artifact_path": "~no-such-user-zz/x.log"},
            ],
        }
        assert client.post("/api/test/db/runs", json=doc, headers=key).status_code == 201
        assert client.get("/api/test/run/r1/artifacts").status_code == 401
        listed = client.get("/api/test/run/r1/artifacts", headers=key).json()
        ids = {a["artifact_type"]: a["artifact_id"] for a in listed}
        assert [a["download_url"] is None for a in listed] == [True, False, False, True, True]

        def get(artifact: str) -> Any:
            return client.get(f"/api/test/run/r1/artifacts/{ids[artifact]}", headers=key)

        assert client.get(f"/api/test/run/r1/artifacts/{ids['notes']}").status_code == 401
        refused = get("log")
        assert refused.status_code == 403 and refused.json()["code"] == "outside_results"
        assert get("escape").status_code == 403
        assert get("nobody").status_code == 403
        page = client.get("/ui/part/runs/r1", headers=key)
        assert page.status_code == 200 and "~no-such-user-zz/x.log" in page.text
        notes = get("notes")
        assert notes.status_code == 200 and notes.text == "hello"
        assert notes.headers["content-type"].startswith("text/plain")
        assert get("gone").status_code == 404
        assert client.get("/api/test/run/r1/artifacts/999", headers=key).status_code == 404
        assert client.get("/api/test/run/nope/artifacts/1", headers=key).status_code == 404
        assert client.get("/api/test/run/r1/artifacts/0", headers=key).status_code == 422


def test_remaining_time_comes_from_the_history_of_that_model_and_device(
    suite_client: TestClient,
) -> None:
    now = datetime.now(UTC)
    for n, seconds in enumerate((100, 120, 140)):
        begun = now - timedelta(hours=n + 1)
        doc = {
            "run_id": f"past{n}",
            "model_name": "bert",
            "hardware": ["cpu"],
            "test_type": "basic",
            "started_at": begun.isoformat(),
            "completed_at": (begun + timedelta(seconds=seconds)).isoformat(),
        }
        assert suite_client.post("/api/test/db/runs", json=doc).status_code == 201
    other = {"run_id": "gpu", "model_name": "bert", "hardware": ["cuda"], "test_type": "basic"}
    suite_client.post("/api/test/db/runs", json={**other, "started_at": now.isoformat()})
    live = {
        "model_name": "bert",
        "hardware": ["cpu"],
        "test_type": "basic",
        "status": "running",
        "started_at": (now - timedelta(seconds=10)).isoformat(),
    }
    assert suite_client.post("/api/test/db/runs", json={**live, "run_id": "now"}).status_code == 201
    estimate = suite_client.get("/api/test/status/now").json()["estimated_remaining_time"]
    assert 105 <= estimate <= 110  # the median of 100, 120, 140 s, less the 10 s elapsed
    on_cuda = {**live, "run_id": "cuda-now", "hardware": ["cuda", "cpu"]}
    assert suite_client.post("/api/test/db/runs", json=on_cuda).status_code == 201
    status = suite_client.get("/api/test/status/cuda-now").json()
    assert status["estimated_remaining_time"] is None  # no history on these devices, no progress


def test_an_admin_key_writes_a_suite_that_is_then_listed_and_others_are_refused(
    tmp_path: Path, template_dbs: dict[str, Path], scratch: dict[str, Path]
) -> None:
    suites_file = tmp_path / "suites.toml"
    suites_file.write_text(f'# the operator\'s file\n[suites.one]\nroot = "{scratch["repo"]}"\n')
    body = {"root": str(scratch["repo"]), "args": ["--model", "{model_name}"], "timeout": 60}
    open_settings = make_settings(tmp_path / "open", template_dbs, suites_file=suites_file)
    with TestClient(create_app(open_settings)) as client:
        refused = client.put("/api/test/suites/two", json=body)
        assert (refused.status_code, refused.json()["code"]) == (403, "suites_read_only")
    settings = make_settings(
        tmp_path / "keyed",
        template_dbs,
        suites_file=suites_file,
        api_keys=["w:write", "a:admin"],
    )
    admin = {"X-API-Key": "a"}
    with TestClient(create_app(settings)) as client:
        low = client.put("/api/test/suites/two", json=body, headers={"X-API-Key": "w"})
        assert (low.status_code, low.json()["code"]) == (403, "insufficient_scope")
        assert client.put("/api/test/suites/two", json=body).status_code == 401
        made = client.put("/api/test/suites/two", json=body, headers=admin)
        assert made.status_code == 200, made.text
        assert made.json()["args"] == ["--model", "{model_name}"]
        assert made.json()["timeout"] == 60
        names = [s["name"] for s in client.get("/api/test/suites").json()]
        assert names == ["generated", "one", "two"]  # the other suite is kept
        # What cannot run here is a 4xx and leaves the file as it was.
        before = suites_file.read_text()
        for name, bad, code in [
            ("three", {**body, "root": str(tmp_path / "missing")}, "invalid_suite"),
            ("three", {**body, "args": ["{secret}"]}, "validation_error"),
            ("three", {**body, "python": "/bin/sh", "bogus": 1}, "validation_error"),
            ("generated", body, "invalid_suite_name"),
        ]:
            answer = client.put(f"/api/test/suites/{name}", json=bad, headers=admin)
            assert 400 <= answer.status_code < 500 and answer.json()["code"] == code, answer.text
        assert suites_file.read_text() == before
        # Replacing keeps one entry per name.
        again = client.put("/api/test/suites/two", json={**body, "timeout": 5}, headers=admin)
        assert again.json()["timeout"] == 5
        assert [s["name"] for s in client.get("/api/test/suites").json()].count("two") == 1
    no_file = make_settings(tmp_path / "nofile", template_dbs, api_keys=["a:admin"])
    with TestClient(create_app(no_file)) as client:
        answer = client.put("/api/test/suites/two", json=body, headers=admin)
        assert (answer.status_code, answer.json()["code"]) == (409, "no_suites_file")
