"""Dashboard pages under TestClient: recorded data on every page, filters, keys, offline assets."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support import make_settings
from tests.web.support import BATCH, LIVE_RUN, MODELS, seed

PAGES = (
    "/",
    f"/models/{MODELS[0]}",
    f"/models/{MODELS[1]}",
    f"/runs/{MODELS[0]}-d0",
    f"/batches/{BATCH}",
    "/generator",
    "/docs",
    "/redoc",
)


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    """The app with two models' runs over six days, a batch and a live run."""
    seed(client)
    return client


def test_overview_shows_the_matrix_batches_and_runs_in_progress(seeded: TestClient) -> None:
    page = seeded.get("/")
    assert page.status_code == 200
    html = page.text
    for model in MODELS:
        assert f'href="/models/{model}"' in html
    assert "<th>cpu</th>" in html and "<th>cuda</th>" in html
    # bert's newest run on cuda failed one of its 3 tests there (its cpu cell is the live run).
    assert "cell st-warn" in html and "67%" in html and "cell st-run" in html
    assert f'href="/batches/{BATCH}"' in html
    assert f'href="/runs/{LIVE_RUN}"' in html
    data = seeded.get("/ui/data/").json()
    assert [row["model_name"] for row in data["matrix"]] == sorted(MODELS)
    assert data["running_total"] == 1


def test_model_page_charts_each_device_and_metric_downsampled(seeded: TestClient) -> None:
    data = seeded.get(f"/ui/data/models/{MODELS[0]}").json()
    charts = {c["id"]: c for c in data["charts"]}
    assert {"pass-rate", "p50", "p95"} <= set(charts)
    rates = {s["name"]: s["y"] for s in charts["pass-rate"]["series"]}
    assert list(rates) == ["cpu", "cuda"]
    # Per device from that device's outcomes: the newest run failed 1 of 3 on cuda only.
    assert rates["cpu"][-1] == 1.0 and rates["cuda"][-1] == pytest.approx(2 / 3)
    titles = {c["title"] for c in data["charts"]}
    assert {"latency_ms (ms)", "memory_mb (MB)", "throughput_items_per_sec (items/s)"} <= titles
    for chart in data["charts"]:
        for series in chart["series"]:
            assert 1 <= len(series["x"]) <= 120 and len(series["x"]) == len(series["y"])
    # One run a day for six days (and the live run has no counts).
    assert len(charts["pass-rate"]["series"][0]["x"]) == 6
    assert data["pager"]["total"] == 7
    narrowed = seeded.get(f"/ui/data/models/{MODELS[0]}?device=cuda&per_page=2").json()
    assert [s["name"] for s in narrowed["charts"][0]["series"]] == ["cuda"]
    assert len(narrowed["runs"]) == 2 and narrowed["pager"]["pages"] == 3
    assert seeded.get(f"/models/{MODELS[0]}").status_code == 200


def test_run_page_puts_failures_first_and_filters_sorts_and_pages(seeded: TestClient) -> None:
    run_id = f"{MODELS[0]}-d0"
    data = seeded.get(f"/ui/data/runs/{run_id}").json()
    assert data["cases"][0]["status"] == "failed"
    assert "expected 1.0\n  got 0.5" in data["cases"][0]["error"]
    assert data["case_counts"] == {"failed": 1, "passed": 5}
    assert [s["step_name"] for s in data["steps"]] == ["load", "inference", "cleanup"]
    assert data["timeline"]["series"][0]["y"] == ["load", "inference", "cleanup"]
    assert {m["metric_name"] for m in data["metrics"]} == {
        "latency_ms",
        "throughput_items_per_sec",
        "memory_mb",
    }
    assert data["artifacts"][0]["artifact_path"] == "pytest.log"
    assert data["live"] is False
    by_name = seeded.get(f"/ui/data/runs/{run_id}?sort=name&failures_first=false").json()
    names = [c["name"] for c in by_name["cases"]]
    assert names == sorted(names)
    found = seeded.get(f"/ui/data/runs/{run_id}?q=batch&status=passed").json()
    assert [c["name"] for c in found["cases"]] == ["test_batch_inference[cpu]"]
    paged = seeded.get(f"/ui/data/runs/{run_id}?per_page=4&page=2").json()
    assert len(paged["cases"]) == 2 and paged["pager"]["prev"].endswith("page=1")
    html = seeded.get(f"/runs/{run_id}").text
    assert "AssertionError: outputs differ" in html and 'href="/api/test/db/run/' in html
    assert seeded.get(f"/ui/data/runs/{LIVE_RUN}").json()["live"] is True


def test_batch_and_generator_pages_list_their_members(seeded: TestClient) -> None:
    data = seeded.get(f"/ui/data/batches/{BATCH}").json()
    assert sorted(r["model_name"] for r in data["runs"]) == sorted(MODELS)
    assert seeded.get(f"/batches/{BATCH}").status_code == 200
    assert seeded.get("/ui/data/generator").json()["tasks"] == []


def test_task_page_highlights_the_rendered_file_inside_the_output_folder(
    client: TestClient,
) -> None:
    started = client.post("/api/generator/model", json={"model_name": "gpt2"})
    assert started.status_code == 202, started.text
    task_id = started.json()["task_id"]
    for _ in range(200):
        if client.get(f"/api/generator/status/{task_id}").json()["status"] == "completed":
            break
        time.sleep(0.05)
    html = client.get(f"/generator/tasks/{task_id}").text
    assert 'class="highlight"' in html and "test_load_model" in html
    assert 'data-run-model="gpt2"' in html
    listed = client.get("/ui/data/generator?model=gpt2").json()
    assert [t["task_id"] for t in listed["tasks"]] == [task_id]
    # A path recorded by hand outside the output folder is never read.
    outside = client.post(
        "/api/generator/db/tasks",
        json={"task_id": "t-out", "model_name": "x", "output_file": "/etc/passwd"},
    )
    assert outside.status_code in (200, 201), outside.text
    assert client.get("/ui/data/generator/tasks/t-out").json()["code_html"] is None


def test_bad_filters_and_unknown_objects_are_clear_errors(seeded: TestClient) -> None:
    bad = seeded.get("/ui/data/runs/x?sort=random")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_filters"
    assert seeded.get("/ui/data/?per_page=100000").status_code == 422
    assert seeded.get("/ui/data/?unknown=1").json()["code"] == "invalid_filters"
    missing = seeded.get("/ui/data/runs/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    page = seeded.get("/runs/nope")
    assert page.status_code == 404 and "run nope not found" in page.text
    assert seeded.get("/models/never-seen").status_code == 404


@pytest.fixture
def protected(tmp_path: Path, template_dbs: dict[str, Path]) -> Iterator[TestClient]:
    """The app with API keys and protected reads."""
    settings = make_settings(tmp_path, template_dbs, api_keys=["k1"], protect_reads=True)
    with TestClient(create_app(settings)) as test_client:
        seed(test_client, headers={"X-API-Key": "k1"})
        yield test_client


def test_protected_reads_serve_an_empty_shell_and_data_only_with_a_key(
    protected: TestClient,
) -> None:
    shell = protected.get("/")
    assert shell.status_code == 200
    assert MODELS[0] not in shell.text and 'id="key-form"' in shell.text
    assert 'data-loaded="false"' in shell.text
    assert protected.get("/ui/part/").status_code == 401
    assert protected.get("/ui/data/", headers={"X-API-Key": "nope"}).status_code == 403
    part = protected.get("/ui/part/", headers={"X-API-Key": "k1"})
    assert part.status_code == 200 and MODELS[0] in part.text


EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']([^"']+)["']""", re.I)
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)|@import\s+["']([^"']+)""", re.I)
NAMESPACES = ("http://www.w3.org/",)


def _local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("", "data") and not url.startswith("//")


def test_no_page_references_an_external_host(seeded: TestClient) -> None:
    """Pages and our own JS/CSS name no other host; CSS loaded from packages imports none.

    The vendor JS bundles hold URLs of features we never call (map tiles, spec links); the
    browser test (tests/web/test_browser.py) proves at run time that no request leaves the
    loopback address.
    """
    loaded: set[str] = set()
    for path in PAGES:
        page = seeded.get(path)
        assert page.status_code == 200, path
        for url in EXTERNAL.findall(page.text):
            assert _local(url), f"{path} references {url}"
            if url.endswith((".js", ".css")) or url.startswith("/ui/pygments.css"):
                loaded.add(url)
        assert "cdn." not in page.text and "fonts.googleapis" not in page.text, path
    assert "/assets/plotly/plotly.min.js" in loaded
    assert "/assets/docs/swagger-ui-bundle.js" in loaded
    assert "/ui/redoc.standalone.js" in loaded
    for url in sorted(loaded):
        asset = seeded.get(url)
        assert asset.status_code == 200, url
        text = asset.text
        if url.endswith(".css"):
            for found in CSS_URL.findall(text):
                target = found[0] or found[1]
                assert _local(target), f"{url} loads {target}"
        if url.startswith("/static/"):
            for absolute in re.findall(r"https?://[^\s\"')]+", text):
                assert absolute.startswith(NAMESPACES), f"{url} names {absolute}"
    assert "cdn.redoc.ly" not in seeded.get("/ui/redoc.standalone.js").text


def test_recorded_markup_is_shown_as_text(client: TestClient) -> None:
    name = "<script>alert(1)</script>'\""
    answer = client.post(
        "/api/test/db/runs",
        json={
            "run_id": "xss",
            "model_name": name,
            "hardware": ["cpu"],
            "status": "error",
            "started_at": "2026-11-27T10:00:00Z",
            "error": "<img src=x onerror=alert(2)>",
        },
    )
    assert answer.status_code in (200, 201), answer.text
    for path in ("/", "/runs/xss"):
        html = client.get(path).text
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert client.get(f"/ui/data/models/{name}").json()["model_name"] == name
