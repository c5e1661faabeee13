"""Browser fixtures: a real uvicorn seeded through the recording API, Debian's Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import ROOT, Server, deselect_unless_asked
from tests.web.support import seed

MARKER = "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = ROOT / "data" / "ui-screenshots"
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
PROTECTED_LOG = b"collected 6 items\n\xe2\x9c\x93 6 passed\n"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave browser tests out of runs that do not name the marker (plain `make test`)."""
    deselect_unless_asked(config, items, MARKER)


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real uvicorn on a free loopback port, seeded through the recording API."""
    srv = Server(tmp_path_factory.mktemp("ui-server")).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            seed(http)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def protected_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real uvicorn whose reads need an API key, seeded with that key."""
    env = {"APP_API_KEYS": "k1", "APP_PROTECT_READS": "true"}
    folder = tmp_path_factory.mktemp("ui-protected")
    # Every seeded run records the artifact pytest.log: here it exists, so it can be downloaded.
    (folder / "results").mkdir()
    (folder / "results" / "pytest.log").write_bytes(PROTECTED_LOG)
    srv = Server(folder, env=env).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            seed(http, headers={"X-API-Key": "k1"})
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium from Debian's package, driven by Playwright, on a fresh profile."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: run `make test-ui`"
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Watch:
    """What went wrong on a page: console errors, page errors, failed or external requests."""

    problems: list[str] = field(default_factory=list)
    allowed_status: set[int] = field(default_factory=set)

    def check(self) -> None:
        """Fail with every problem seen."""
        assert not self.problems, "\n".join(self.problems)


# Streams the page ends itself when it moves on (the live run's event stream and polls).
_ABORTABLE = ("/api/test/events/", "/api/test/status/")


def watch(page: Any, allowed_status: set[int] | None = None) -> Watch:
    """Record console errors, uncaught exceptions, failed, erroring and non-loopback requests."""
    seen = Watch(allowed_status=allowed_status or set())

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            seen.problems.append(f"console error: {msg.text} at {msg.location}")

    def on_failed(request: Any) -> None:
        failure = request.failure or ""
        if "ERR_ABORTED" in failure and any(p in request.url for p in _ABORTABLE):
            return
        seen.problems.append(f"request failed: {request.url} ({failure})")

    def on_response(response: Any) -> None:
        if response.status >= 400 and response.status not in seen.allowed_status:
            seen.problems.append(f"HTTP {response.status}: {response.url}")

    def route(route: Any) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
            route.continue_()
            return
        seen.problems.append(f"external request: {route.request.url}")
        route.abort()

    page.on("console", on_console)
    page.on("pageerror", lambda exc: seen.problems.append(f"page error: {exc}"))
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    page.route("**/*", route)
    return seen


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot (by default of the whole page) under data/ui-screenshots/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
