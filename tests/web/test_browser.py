"""The dashboard in headless Chromium: every page draws its data, links lead on, runs go live."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support import Server
from tests.web.conftest import PROTECTED_LOG, screenshot, watch
from tests.web.support import BATCH, FLAKY_TEST, HISTORY_MODEL, LIVE_RUN, MODELS, NEW_FAILURE

pytestmark = [pytest.mark.ui, pytest.mark.e2e]

FAILING_RUN = f"{MODELS[0]}-d0"
PAGES = {
    "overview": "/",
    "model": f"/models/{MODELS[0]}",
    "model-vision": f"/models/{MODELS[1]}",
    "run": f"/runs/{FAILING_RUN}",
    "run-live": f"/runs/{LIVE_RUN}",
    "batch": f"/batches/{BATCH}",
    "generator": "/generator",
    "model-history": f"/models/{HISTORY_MODEL}",
    "flaky": "/flaky",
    "regressions": "/regressions",
    "compare": f"/compare?base={HISTORY_MODEL}-d2&head={HISTORY_MODEL}-d1",
    "compare-batch": f"/compare?base={BATCH}&head={HISTORY_MODEL}-d0",
    "tests": "/tests",
    "test": f"/tests/history?test_id={quote(FLAKY_TEST)}&model_name={HISTORY_MODEL}&hardware=cpu",
    "sql": "/sql",
}
PHONE = ("overview", "model", "run", "model-history", "flaky", "regressions", "compare", "test")


@pytest.fixture
def page(browser: Any) -> Any:
    """A new tab, closed after the test."""
    tab = browser.new_page()
    yield tab
    tab.close()


def _open(page: Any, url: str) -> None:
    # Not "networkidle": a live run's page keeps its event stream open.
    page.goto(url, wait_until="load")
    _settled(page)


def _settled(page: Any) -> None:
    page.wait_for_function(
        "(() => { const m = document.getElementById('content');"
        " if (!m) { return document.readyState === 'complete'; }"
        " return m.dataset.loaded === 'true' &&"
        " document.querySelectorAll('.chart:not(.drawn)').length === 0; })()"
    )


def _drawn_series(page: Any, chart_id: str) -> list[str]:
    """Return the legend names of a drawn Plotly chart, after checking its SVG has marks."""
    chart = page.locator(f"#chart-{chart_id}")
    chart.locator("svg.main-svg").first.wait_for()
    points = chart.locator("g.trace path.point, g.trace .bars path, g.trace path.js-line")
    assert points.count() > 0, f"chart {chart_id} drew nothing"
    return chart.locator("g.legend text.legendtext").all_text_contents()


def test_every_page_renders_its_data_without_errors(ui_server: Server, page: Any) -> None:
    seen = watch(page)
    for name, path in PAGES.items():
        _open(page, ui_server.url + path)
        assert page.locator("main#content h1").count() == 1, name
        assert page.locator("main .loading").count() == 0, name
        screenshot(page, name)
    page.set_viewport_size({"width": 390, "height": 844})
    for name in PHONE:
        _open(page, ui_server.url + PAGES[name])
        # Nothing wider than the phone's screen but the scrollable tables.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390 + 1, f"{name} is {width}px wide on a phone"
        screenshot(page, f"{name}-phone")
    seen.check()


def test_charts_draw_each_device_and_metric(ui_server: Server, page: Any) -> None:
    seen = watch(page)
    _open(page, ui_server.url + PAGES["model"])
    for chart_id in ("pass-rate", "p50", "p95"):
        assert _drawn_series(page, chart_id) == ["cpu", "cuda"], chart_id
    titles = page.locator(".chart-box figcaption").all_text_contents()
    assert {"latency_ms (ms)", "memory_mb (MB)", "throughput_items_per_sec (items/s)"} <= set(
        titles
    )
    metric_charts = page.locator("[id^=chart-metric-]")
    assert metric_charts.count() == 3
    for i in range(3):
        assert _drawn_series(page, f"metric-{i}") == ["cpu", "cuda"]
    _open(page, ui_server.url + PAGES["run"])
    bars = page.locator("#chart-steps g.trace.bars path")
    bars.first.wait_for()
    assert bars.count() == 3
    seen.check()


def test_overview_links_lead_to_the_model_then_the_run(ui_server: Server, page: Any) -> None:
    seen = watch(page)
    _open(page, ui_server.url + "/")
    page.locator("#matrix a.model-link", has_text=MODELS[0]).click()
    page.wait_for_url(f"**/models/{MODELS[0]}")
    _settled(page)
    page.locator("table.runs a.run-link", has_text=FAILING_RUN).click()
    page.wait_for_url(f"**/runs/{FAILING_RUN}")
    _settled(page)
    # Failures first, with the full error text one click away.
    first = page.locator("#cases tbody tr").first
    assert "test_batch_inference[cuda]" in first.inner_text()
    first.locator("summary").click()
    assert "expected 1.0\n  got 0.5" in first.locator("pre.error-text").inner_text()
    # Filters live in the query string.
    page.fill("input[name=q]", "basic")
    page.click("#cases >> xpath=preceding::button[1]")
    page.wait_for_url("**q=basic**")
    _settled(page)
    assert page.locator("#cases tbody tr").count() == 2
    seen.check()


def test_live_run_progress_advances_without_a_reload(ui_server: Server, page: Any) -> None:
    seen = watch(page)
    _open(page, ui_server.url + PAGES["run-live"])
    page.evaluate("window.__same_document = true")
    bar = page.locator("#run-progress")
    assert bar.get_attribute("value") == "0.1"
    run = f"{ui_server.url}/api/test/db/run/{quote(LIVE_RUN)}"
    with httpx.Client(timeout=10) as http:
        for progress in (0.4, 0.8):
            step = f"step at {progress}"
            answer = http.patch(run, json={"progress": progress, "current_step": step})
            assert answer.status_code == 200, answer.text
            page.wait_for_function(
                f"document.getElementById('run-progress').value === {progress}", timeout=10_000
            )
            page.locator("#run-step", has_text=step).wait_for(timeout=10_000)
        answer = http.post(
            f"{ui_server.url}/api/test/db/run/{quote(LIVE_RUN)}/complete",
            json={"status": "completed"},
        )
        assert answer.status_code == 200, answer.text
    page.locator("#run-status .badge", has_text="completed").wait_for(timeout=10_000)
    assert page.evaluate("window.__same_document") is True
    screenshot(page, "run-live-completed")
    seen.check()


def test_docs_and_redoc_render_offline(ui_server: Server, page: Any) -> None:
    seen = watch(page)
    _open(page, ui_server.url + "/docs")
    page.locator(".swagger-ui .opblock").first.wait_for(timeout=15_000)
    assert page.locator(".swagger-ui .opblock").count() > 50
    screenshot(page, "docs", full_page=False)
    _open(page, ui_server.url + "/redoc")
    page.locator("h1", has_text="Accelerate Tracking").first.wait_for(timeout=15_000)
    assert page.locator("[role=menuitem]").count() > 20
    screenshot(page, "redoc", full_page=False)
    seen.check()


def test_generator_task_page_highlights_the_file_and_runs_it(ui_server: Server, page: Any) -> None:
    with httpx.Client(base_url=ui_server.url, timeout=10) as http:
        task_id = http.post("/api/generator/model", json={"model_name": "gpt2"}).json()["task_id"]
        deadline = time.monotonic() + 30
        while http.get(f"/api/generator/status/{task_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline, "the generator task did not complete"
            time.sleep(0.1)
    seen = watch(page)
    _open(page, ui_server.url + "/generator")
    screenshot(page, "generator-tasks")  # the "generator" shot is taken before any task exists
    page.locator("#tasks a.task-link", has_text=task_id).click()
    page.wait_for_url(f"**/generator/tasks/{task_id}")
    _settled(page)
    code = page.locator("#code .highlight")
    assert "def test_load_model" in code.inner_text()
    assert code.locator("span.k").count() > 10  # keywords coloured by Pygments
    screenshot(page, "task", full_page=False)
    # Status polls refused: only the run's event stream (SSE) can bring the page to the end.
    page.route("**/api/test/status/**", lambda route: route.abort("aborted"))
    page.click("#run-suite")
    page.wait_for_url("**/runs/**")
    # The server's own runner executes it: its SSE stream drives the page to the end.
    page.locator("#run-status .badge").filter(has_text=re.compile("completed|error")).wait_for(
        timeout=60_000
    )
    screenshot(page, "run-from-generator")
    # The run wrote its log, JUnit XML and results file: each is linked and downloads as written.
    links = page.locator("a.artifact-link")
    links.first.wait_for()
    assert links.count() >= 2 and page.locator(".artifacts .note").count() == 0
    with page.expect_download() as got:
        links.first.click()
    run_id = page.url.rsplit("/", 1)[-1]
    listed = httpx.get(f"{ui_server.url}/api/test/run/{run_id}/artifacts", timeout=10).json()
    stored = Path(listed[0]["artifact_path"])
    on_disk = stored if stored.is_absolute() else ui_server.folder / "results" / stored
    assert got.value.suggested_filename == on_disk.name
    assert Path(got.value.path()).read_bytes() == on_disk.read_bytes() != b""
    seen.check()


def test_protected_reads_ask_for_the_key_once(
    protected_server: Server, page: Any, browser: Any
) -> None:
    seen = watch(page)
    page.goto(protected_server.url + "/", wait_until="load")
    form = page.locator("#key-form")
    form.wait_for(state="visible")
    assert page.locator("#matrix").count() == 0
    page.fill("#key-form input", "k1")
    page.click("#key-form button")
    page.locator("#matrix a.model-link", has_text=MODELS[0]).wait_for()
    screenshot(page, "overview-with-key")
    page.locator("#matrix a.model-link", has_text=MODELS[0]).click()
    page.wait_for_url(f"**/models/{MODELS[0]}")
    _settled(page)
    _drawn_series(page, "pass-rate")
    assert not form.is_visible()
    # The key is kept for the browser (localStorage): a new tab does not ask again.
    other = browser.new_page()
    other_seen = watch(other)
    _open(other, protected_server.url + PAGES["run"])
    assert not other.locator("#key-form").is_visible()
    other.close()
    seen.check()
    other_seen.check()


def test_protected_links_send_the_key_and_ask_for_it_without(
    protected_server: Server, page: Any, browser: Any
) -> None:
    # Forget a key an earlier test kept, once the page has done loading (with it or asking).
    page.goto(protected_server.url + PAGES["run"], wait_until="load")
    page.wait_for_function(
        "document.getElementById('content').dataset.loaded === 'true'"
        " || !document.getElementById('key-form').hidden"
    )
    page.evaluate("localStorage.clear()")
    seen = watch(page)
    page.reload(wait_until="load")
    page.fill("#key-form input", "k1")
    page.click("#key-form button")
    _settled(page)

    def opened_json(link: str) -> Any:
        with browser.expect_page() as new:
            page.click(link)
        tab = new.value
        tab.wait_for_url(re.compile(r"^blob:"))
        body = json.loads(tab.evaluate("document.querySelector('pre').textContent"))
        tab.close()
        return body

    assert opened_json("#page-json")["run"]["run_id"] == FAILING_RUN
    built_from = page.locator(".sources a.src", has_text="run")
    assert built_from.get_attribute("href") == f"/api/test/db/run/{FAILING_RUN}"
    assert opened_json(".sources a.src >> text=run")["run_id"] == FAILING_RUN
    artifact = page.locator("a.artifact-link").first
    with page.expect_download() as got:
        artifact.click()
    assert got.value.suggested_filename == "pytest.log"
    assert Path(got.value.path()).read_bytes() == PROTECTED_LOG
    seen.check()  # no 401 or 403 among the page's requests
    # A plain request of the same link is refused: the page's key made the difference.
    href = protected_server.url + str(artifact.get_attribute("href"))
    assert httpx.get(href, timeout=10).status_code == 401
    screenshot(page, "run-protected-links")
    # Forgotten: the page asks for the key again, and a link says it needs one; nothing opens.
    page.click("#forget-key")
    page.locator("#key-form").wait_for(state="visible")
    assert page.evaluate("localStorage.length") == 0
    tabs = len(browser.pages)
    page.click("#page-json")
    page.locator("#key-error", has_text="This link needs the API key.").wait_for()
    assert len(browser.pages) == tabs and page.url == protected_server.url + PAGES["run"]
    screenshot(page, "run-protected-key-forgotten", full_page=False)
    seen.check()


def test_report_pages_draw_their_tables_and_charts(ui_server: Server, page: Any) -> None:
    seen = watch(page)
    _open(page, ui_server.url + PAGES["flaky"])
    first = page.locator("#flaky tbody tr").first
    assert FLAKY_TEST in first.inner_text() and "flaky" in first.inner_text()
    assert page.locator("#flaky tbody tr").count() == 3
    _open(page, ui_server.url + PAGES["regressions"])
    top = page.locator("#regressions tbody tr").first
    assert "latency_ms" in top.inner_text() and "regression" in top.inner_text()
    assert top.locator("a.run-link").inner_text() == f"{HISTORY_MODEL}-d5"
    assert NEW_FAILURE in page.locator("#newly-failing tbody").inner_text()
    _open(page, ui_server.url + PAGES["compare"])
    assert page.locator("#cmp-newly_failing tbody tr").count() == 2
    assert "latency_ms" in page.locator("#cmp-metrics tbody").inner_text()
    _open(page, ui_server.url + PAGES["tests"])
    assert page.locator("#tests tbody tr").count() >= 10
    _open(page, ui_server.url + PAGES["test"])
    assert _drawn_series(page, "history") == ["duration", "failed", "passed"]
    assert page.locator("#history tbody tr").count() == 12
    # The model page marks the change point the regressions report found on its latency chart.
    _open(page, ui_server.url + PAGES["model-history"])
    latency = page.locator(".chart-box", has_text="latency_ms (ms)").locator(".chart")
    assert latency.get_attribute("data-marks") == "1"
    assert latency.locator(".shapelayer path").count() >= 1
    assert "regression · cpu" in latency.locator(".annotation").all_text_contents()
    assert FLAKY_TEST in page.locator("#flaky").inner_text()
    screenshot(page, "model-history-marks")
    seen.check()


def test_sql_page_runs_the_query_and_downloads_csv(ui_server: Server, page: Any) -> None:
    seen = watch(page)
    _open(page, ui_server.url + PAGES["sql"])
    page.fill(
        "#sql-text", "SELECT model_name, count(*) AS runs FROM test_runs GROUP BY 1 ORDER BY 1"
    )
    page.click("#sql-run")
    page.locator("#sql-table tbody tr").first.wait_for()
    rows = page.locator("#sql-table tbody tr").all_inner_texts()
    counts = dict(r.split("\t") for r in rows)
    # The generator test may have recorded a run of its own model on this server first.
    assert list(counts) == sorted(counts) and {*MODELS, HISTORY_MODEL} <= set(counts)
    assert counts[HISTORY_MODEL] == "12" and counts[MODELS[1]] == "6"
    assert "sql=SELECT" in page.url  # the query is kept in the address, bookmarkable
    with page.expect_download() as got:
        page.click("#sql-csv")
    path = got.value.path()
    assert Path(path).read_text(encoding="utf-8").splitlines()[0] == '"model_name","runs"'
    screenshot(page, "sql-result")
    seen.check()
    # A write is refused by the endpoint (400): the page says why; the browser logs the 400.
    seen.allowed_status.add(400)
    page.fill("#sql-text", "DELETE FROM test_runs")
    page.click("#sql-run")
    page.locator("#sql-status", has_text="Refused").wait_for()
    assert "query_refused" not in page.locator("#sql-status").inner_text()
    assert all("400" in p and "/api/test/db/query" in p for p in seen.problems), seen.problems


def test_links_lead_from_overview_to_model_run_test_and_back(ui_server: Server, page: Any) -> None:
    seen = watch(page)
    _open(page, ui_server.url + "/")
    page.click("#count-flaky")
    page.wait_for_url("**/flaky?verdict=flaky")
    _settled(page)
    assert page.locator("#flaky tbody tr").count() == 1
    _open(page, ui_server.url + "/")
    page.locator("#matrix a.model-link", has_text=HISTORY_MODEL).click()
    page.wait_for_url(f"**/models/{HISTORY_MODEL}")
    _settled(page)
    page.locator("table.runs a.run-link", has_text=f"{HISTORY_MODEL}-d0").click()
    page.wait_for_url(f"**/runs/{HISTORY_MODEL}-d0")
    _settled(page)
    page.locator("#cases a.test-link", has_text=FLAKY_TEST).click()
    page.wait_for_url("**/tests/history?**")
    _settled(page)
    assert _drawn_series(page, "history") == ["duration", "failed", "passed"]
    page.locator(f'#history a[href="/runs/{HISTORY_MODEL}-d1"]').click()
    page.wait_for_url(f"**/runs/{HISTORY_MODEL}-d1")
    _settled(page)
    page.click("#compare-previous")
    page.wait_for_url("**/compare?**")
    _settled(page)
    assert page.locator("#cmp-newly_failing tbody tr").count() == 2
    seen.check()
