"""GET /api/test/types?model_name=X collects with pytest once per module version, bounded."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.components.test_suite.collection import COLLECTOR, CollectBusy, Collector
from app.main import create_app
from tests.support import make_settings

SUITES = Path(__file__).resolve().parents[1] / "fixtures" / "suites"


@pytest.fixture
def tests_dir(tmp_path: Path) -> Path:
    """A tests folder holding the `passing` fixture suite."""
    folder = tmp_path / "tests"
    folder.mkdir()
    shutil.copy(SUITES / "test_passing.py", folder / "test_passing.py")
    return folder


@pytest.fixture
def suite_client(
    tmp_path: Path, template_dbs: dict[str, Path], tests_dir: Path
) -> Iterator[TestClient]:
    """The app serving that tests folder."""
    settings = make_settings(tmp_path, template_dbs, tests_dir=tests_dir)
    with TestClient(create_app(settings)) as client:
        yield client


def collected(client: TestClient) -> dict[str, list[str]]:
    """Return each test type's tests in the `passing` module."""
    response = client.get("/api/test/types", params={"model_name": "passing"})
    assert response.status_code == 200, response.text
    return {t["name"]: t["tests"] for t in response.json()}


def test_a_second_call_does_not_spawn_pytest(suite_client: TestClient, tests_dir: Path) -> None:
    runs = COLLECTOR.runs
    first = collected(suite_client)
    assert first["basic"] == ["test_addition", "test_hardware_option"]
    assert COLLECTOR.runs == runs + len(first)  # one pytest per test type
    hits = COLLECTOR.hits
    assert collected(suite_client) == first
    assert COLLECTOR.runs == runs + len(first)  # nothing spawned
    assert COLLECTOR.hits == hits + len(first)
    # A changed module is collected again.
    module = tests_dir / "test_passing.py"
    added = "\n\n@pytest.mark.comprehensive\ndef test_added_later():\n    assert True\n"
    module.write_text(module.read_text() + added)
    stat = module.stat()
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    again = collected(suite_client)
    assert COLLECTOR.runs == runs + 2 * len(first)
    assert "test_added_later" in again["comprehensive"]


def test_a_busy_server_answers_503_rather_than_queueing(
    suite_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy = Collector(concurrency=1)
    monkeypatch.setattr("app.components.test_suite.exec_router.COLLECTOR", busy)
    assert busy._slots.acquire(blocking=False)  # another collection holds the only slot
    try:
        response = suite_client.get("/api/test/types", params={"model_name": "passing"})
    finally:
        busy._slots.release()
    assert response.status_code == 503
    assert response.json()["code"] == "busy"
    assert busy.runs == 0
    assert collected(suite_client)["basic"] == ["test_addition", "test_hardware_option"]


def test_a_slow_collection_is_cut_off(tests_dir: Path) -> None:
    slow = Collector(timeout=0.01)
    with pytest.raises(CollectBusy) as refused:
        slow.tests(tests_dir / "test_passing.py", "basic")
    assert refused.value.code == "collect_timeout"


def test_the_cache_is_bounded(tests_dir: Path) -> None:
    small = Collector(size=2)
    module = tests_dir / "test_passing.py"
    for test_type in ("basic", "comprehensive", "fault_tolerance"):
        small.tests(module, test_type)
    assert len(small._cache) == 2
    small.tests(module, "fault_tolerance")
    assert small.hits == 1 and small.runs == 3
