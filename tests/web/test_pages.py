"""Dashboard pages under TestClient: recorded data on every page, filters, keys, offline assets."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.support import make_settings
from tests.web.support import (
    BATCH,
    FLAKY_TEST,
    HISTORY_MODEL,
    LIVE_RUN,
    MODELS,
    NEW_FAILURE,
    seed,
)

PAGES = (
    "/",
    f"/models/{MODELS[0]}",
    f"/models/{MODELS[1]}",
    f"/runs/{MODELS[0]}-d0",
    f"/batches/{BATCH}",
    "/generator",
    "/flaky",
    "/regressions",
    "/compare",
    f"/compare?base={HISTORY_MODEL}-d1&head={HISTORY_MODEL}-d0",
    "/tests",
    f"/tests/history?test_id={FLAKY_TEST}&model_name={HISTORY_MODEL}",
    "/sql",
    "/docs",
    "/redoc",
)


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    """The app with two models' runs over six days, a batch, a live run and a third model's
    two weeks with a latency regression, a flaky and a newly failing test."""
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
    assert [row["model_name"] for row in data["matrix"]] == sorted((*MODELS, HISTORY_MODEL))
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


def test_run_page_links_only_artifacts_that_can_be_downloaded(
    seeded: TestClient, settings: Settings
) -> None:
    (settings.folder("results") / "kept.log").write_text("kept\n", encoding="utf-8")
    doc = {
        "run_id": "with-files",
        "model_name": MODELS[0],
        "hardware": ["cpu"],
        "status": "completed",
        "artifacts": [
            {"artifact_type": "log", "artifact_path": "kept.log"},
            {"artifact_type": "log", "artifact_path": "gone.log"},
            {"artifact_type": "junit", "artifact_path": "/etc/hostname"},
        ],
    }
    assert seeded.post("/api/test/db/runs", json=doc).status_code in (200, 201)
    data = seeded.get("/ui/data/runs/with-files").json()
    found = {a["artifact_path"]: a for a in data["artifacts"]}
    kept = found["kept.log"]
    assert kept["unavailable"] is None and kept["file_name"] == "kept.log"
    assert seeded.get(kept["download_url"]).text == "kept\n"
    assert found["gone.log"]["download_url"] is None
    assert found["gone.log"]["unavailable"] == "missing"
    assert found["/etc/hostname"]["unavailable"] == "outside the results folder"
    # The route agrees: what the page does not link answers 404 and 403.
    for path, code in (("gone.log", 404), ("/etc/hostname", 403)):
        url = f"/api/test/run/with-files/artifacts/{found[path]['id']}"
        assert seeded.get(url).status_code == code, path
    html = seeded.get("/runs/with-files").text
    assert html.count('class="artifact-link"') == 1
    assert f'href="{kept["download_url"]}" download="kept.log" data-keyed' in html
    assert (
        '<code class="artifact-off">gone.log</code> <small class="note">(not downloadable: missing)'
        in html
    )
    assert "(not downloadable: outside the results folder)" in html
    # The seeded runs record a pytest.log that was never written.
    seeded_run = seeded.get(f"/runs/{MODELS[0]}-d0").text
    assert "artifact-link" not in seeded_run and "(not downloadable: missing)" in seeded_run


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


# --- report pages --------------------------------------------------------------------------

FLAKY_URL = f"/tests/history?test_id=test_generate%5Bcpu%5D&amp;model_name={HISTORY_MODEL}"


def test_overview_counts_regressions_and_flaky_tests_and_links_them(seeded: TestClient) -> None:
    data = seeded.get("/ui/data/").json()
    assert data["counts"] == {"regressions": 1, "newly_failing": 1, "flaky": 1}
    html = seeded.get("/").text
    assert (
        'href="/regressions?verdict=regression"' in html and 'href="/flaky?verdict=flaky"' in html
    )
    assert re.search(r'id="count-regressions"><strong>1</strong> regressions', html)


def test_flaky_page_lists_verdicts_rates_intervals_and_links_the_test(seeded: TestClient) -> None:
    data = seeded.get("/ui/data/flaky").json()
    first = data["rows"][0]
    assert (first["test_id"], first["verdict"], first["runs"], first["failures"]) == (
        FLAKY_TEST,
        "flaky",
        12,
        4,
    )
    assert first["failure_rate_low"] < first["failure_rate"] < first["failure_rate_high"]
    assert first["flips"] == 8
    # The default shows flaky and broken: the newly failing test and bert's one failure are broken.
    assert {(r["test_id"], r["verdict"]) for r in data["rows"][1:]} == {
        (NEW_FAILURE, "broken"),
        ("test_batch_inference[cuda]", "broken"),
    }
    only = seeded.get("/ui/data/flaky?verdict=flaky").json()
    assert [r["test_id"] for r in only["rows"]] == [FLAKY_TEST]
    assert only["json"]["flaky"] == "/api/test/db/flaky?days=30&min_runs=5&verdict=flaky"
    api = seeded.get(only["json"]["flaky"])
    assert api.status_code == 200 and [r["test_id"] for r in api.json()] == [FLAKY_TEST]
    paged = seeded.get("/ui/data/flaky?per_page=1&page=2").json()
    assert (
        paged["pager"]["total"] == 3 and paged["rows"][0]["test_id"] == data["rows"][1]["test_id"]
    )
    html = seeded.get("/flaky").text
    assert FLAKY_URL + "&amp;hardware=cpu" in html and "33%" in html and "14%–61%" in html
    assert seeded.get("/ui/data/flaky?verdict=great").json()["code"] == "invalid_filters"


def test_regressions_page_shows_the_change_its_first_run_and_newly_failing(
    seeded: TestClient,
) -> None:
    data = seeded.get("/ui/data/regressions").json()
    top = data["series"][0]
    assert (top["model_name"], top["metric"], top["verdict"]) == (
        HISTORY_MODEL,
        "latency_ms",
        "regression",
    )
    assert top["baseline_n"] == 6 and top["recent_n"] == 6
    assert top["p_value"] < 0.05 and top["relative_change"] == pytest.approx(10 / 10.2)
    # The oldest run of the recent week is the first after the change.
    assert top["change_run_id"] == f"{HISTORY_MODEL}-d5"
    assert [(r["test_id"], r["recent_failed"]) for r in data["newly_failing"]] == [(NEW_FAILURE, 2)]
    html = seeded.get("/regressions").text
    assert f'href="/runs/{HISTORY_MODEL}-d5"' in html and "+98.0%" in html
    assert 'href="/api/test/db/regressions?days=7&amp;baseline_days=28' in html
    narrowed = seeded.get("/ui/data/regressions?verdict=regression&model_name=bert-base-uncased")
    assert narrowed.json()["series"] == []
    assert seeded.get("/ui/data/regressions?days=400").status_code == 422


def test_compare_page_sorts_tests_into_categories_with_metric_deltas(seeded: TestClient) -> None:
    base, head = f"{HISTORY_MODEL}-d2", f"{HISTORY_MODEL}-d1"
    data = seeded.get(f"/ui/data/compare?base={base}&head={head}").json()["compare"]
    assert data["counts"]["newly_failing"] == 2 and data["counts"]["unchanged"] == 2
    assert {t["test_id"] for t in data["newly_failing"]} == {FLAKY_TEST, NEW_FAILURE}
    back = seeded.get(f"/ui/data/compare?base={head}&head={HISTORY_MODEL}-d0").json()["compare"]
    assert [t["test_id"] for t in back["newly_passing"]] == [FLAKY_TEST]
    assert [t["test_id"] for t in back["still_failing"]] == [NEW_FAILURE]
    # A batch against a run: the other model's tests are added or missing.
    mixed = seeded.get(f"/ui/data/compare?base={BATCH}&head={head}").json()["compare"]
    assert mixed["base"]["kind"] == "batch" and mixed["counts"]["missing"] == 12
    assert mixed["counts"]["added"] == 4
    # Other models' metrics: each on one side only, never "unchanged".
    assert {m["verdict"] for m in mixed["metrics"]} == {"one_side"}
    mixed_html = seeded.get(f"/compare?base={BATCH}&head={head}").text
    assert "only in base" in mixed_html and "only in head" in mixed_html
    assert "vd-unchanged" not in mixed_html
    metric = data["metrics"][0]
    assert metric["metric"] == "latency_ms" and metric["delta"] == pytest.approx(-0.2)
    html = seeded.get(f"/compare?base={base}&head={head}").text
    assert 'id="cmp-newly_failing"' in html and 'id="cmp-metrics"' in html
    assert "No tests newly passing, still failing, added, missing." in html
    assert f'href="/api/test/db/compare?base={base}&amp;head={head}' in html
    # Without both sides: the picker alone, offering the latest runs and batches.
    picker = seeded.get("/ui/data/compare").json()
    assert picker["compare"] is None and {c["id"] for c in picker["choices"]} >= {BATCH, head}
    assert 'id="compare-form"' in seeded.get("/compare").text
    missing = seeded.get("/ui/data/compare?base=nope&head=x")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    run_page = seeded.get(f"/runs/{HISTORY_MODEL}-d0").text
    assert f'href="/compare?base={HISTORY_MODEL}-d1&amp;head={HISTORY_MODEL}-d0"' in run_page


def test_tests_list_and_one_tests_history_with_its_chart(seeded: TestClient) -> None:
    listed = seeded.get(f"/ui/data/tests?model_name={HISTORY_MODEL}").json()
    assert listed["pager"]["total"] == 4
    assert {r["test_id"] for r in listed["rows"]} >= {FLAKY_TEST, NEW_FAILURE}
    found = seeded.get("/ui/data/tests?q=GENERATE").json()
    assert [r["test_id"] for r in found["rows"]] == [FLAKY_TEST]
    assert FLAKY_URL in seeded.get(f"/tests?model_name={HISTORY_MODEL}").text
    url = f"/ui/data/tests/history?test_id={FLAKY_TEST}&model_name={HISTORY_MODEL}&hardware=cpu"
    data = seeded.get(url).json()
    assert data["pager"]["total"] == 12 and data["rows"][0]["run_id"] == f"{HISTORY_MODEL}-d0"
    series = {s["name"]: s for s in data["chart"]["series"]}
    assert list(series) == ["duration", "failed", "passed"]
    assert len(series["failed"]["x"]) == 4 and len(series["passed"]["x"]) == 8
    assert series["duration"]["x"] == sorted(series["duration"]["x"])  # oldest first
    paged = seeded.get(url + "&per_page=5&page=3").json()
    assert len(paged["rows"]) == 2 and len(paged["chart"]["series"][0]["x"]) == 12
    html = seeded.get(url.replace("/ui/data", "")).text
    assert 'id="chart-history"' in html and f'href="/runs/{HISTORY_MODEL}-d9"' in html
    # The run page links each test to its history on that model and device.
    run_html = seeded.get(f"/runs/{HISTORY_MODEL}-d0").text
    assert FLAKY_URL + "&amp;hardware=cpu" in run_html
    assert seeded.get("/ui/data/tests/history").json()["code"] == "invalid_filters"
    gone = seeded.get("/ui/data/tests/history?test_id=never")
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"


def test_model_page_lists_its_flaky_tests_and_marks_change_points(seeded: TestClient) -> None:
    data = seeded.get(f"/ui/data/models/{HISTORY_MODEL}").json()
    assert [(r["test_id"], r["verdict"]) for r in data["flaky"]] == [
        (FLAKY_TEST, "flaky"),
        (NEW_FAILURE, "broken"),
    ]
    latency = next(c for c in data["charts"] if c["title"] == "latency_ms (ms)")
    assert [m["run_id"] for m in latency["marks"]] == [f"{HISTORY_MODEL}-d5"]
    assert latency["marks"][0]["label"] == "regression · cpu"
    other = seeded.get(f"/ui/data/models/{MODELS[0]}").json()
    assert all(not c.get("marks") for c in other["charts"])
    assert FLAKY_URL in seeded.get(f"/models/{HISTORY_MODEL}").text


def test_sql_page_prefills_the_query_the_endpoint_answers(seeded: TestClient) -> None:
    html = seeded.get("/sql?sql=SELECT+1+AS+%3Cb%3E").text
    assert 'id="sql-form" data-endpoint="/api/test/db/query"' in html
    assert "SELECT 1 AS &lt;b&gt;</textarea>" in html and "<b>" not in html
    sql = seeded.get("/ui/data/sql").json()["sql"]
    answer = seeded.post("/api/test/db/query", json={"sql": sql, "limit": 1000})
    assert answer.status_code == 200
    assert dict(answer.json()["rows"]) == {"passed": 71 + 42, "failed": 1 + 6}
    csv = seeded.post("/api/test/db/query?format=csv", json={"sql": sql})
    assert csv.text.splitlines()[0] == '"status","n"'
    assert seeded.get("/ui/data/sql?sql=" + "x" * 20_001).status_code == 422


def test_report_pages_need_the_key_when_reads_are_protected(protected: TestClient) -> None:
    for path in ("/flaky", "/regressions", "/compare", "/tests", "/sql"):
        assert protected.get(f"/ui/part{path}").status_code == 401, path
        assert MODELS[0] not in protected.get(path).text
    part = protected.get("/ui/part/flaky", headers={"X-API-Key": "k1"})
    assert part.status_code == 200 and FLAKY_TEST in part.text
