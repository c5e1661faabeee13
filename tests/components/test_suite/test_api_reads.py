"""Reads: GET /runs filters and paging, model and device statistics, performance, search."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.components.test_suite.support import (
    NOW,
    B,
    assert_stats_rows,
    expected_daily,
    expected_metric_stats,
    expected_stats,
    in_scope,
    instant,
    run_doc,
)
from tests.support import make_settings


def dataset() -> list[dict[str, Any]]:
    """Return runs over three models, three devices, five days, every terminal status."""
    d = lambda days, hours=0: NOW - timedelta(days=days, hours=hours)  # noqa: E731
    docs = [
        run_doc(
            "r01",
            model="bert",
            hardware=["cpu"],
            started=d(0, 2),
            seconds=10,
            cases=(5, 0, 1),
            tags={"branch": "main"},
            metrics={"cpu": {"latency_ms": 10.0, "throughput_per_sec": 100.0}},
        ),
        run_doc(
            "r02",
            model="bert",
            hardware=["cpu", "cuda"],
            started=d(0, 5),
            seconds=20,
            cases=(3, 2, 0),
            tags={"branch": "dev"},
            test_type="comprehensive",
            metrics={"cpu": {"latency_ms": 14.0}, "cuda": {"latency_ms": 2.0}},
        ),
        run_doc(
            "r03",
            model="bert",
            hardware=["cuda"],
            started=d(1, 3),
            seconds=35.5,
            cases=(4, 1, 0),
            batch_id="nightly",
            metrics={"cuda": {"latency_ms": 3.0}},
        ),
        run_doc(
            "r04",
            model="bert",
            hardware=["cpu"],
            started=d(2, 1),
            status="error",
            seconds=4,
            cases=(0, 1, 0),
            tags={"branch": "main", "ci": "yes"},
        ),
        run_doc(
            "r05",
            model="bert",
            hardware=["cpu"],
            started=d(6, 1),
            seconds=100,
            cases=(9, 0, 0),
            metrics={"cpu": {"latency_ms": 30.0}},
        ),
        run_doc(
            "r06",
            model="gpt2",
            hardware=["cuda"],
            started=d(0, 1),
            seconds=50,
            cases=(2, 2, 2),
            batch_id="nightly",
            test_type="fault_tolerance",
            metrics={"cuda": {"latency_ms": 7.0}},
        ),
        run_doc(
            "r07",
            model="gpt2",
            hardware=["cuda", "rocm"],
            started=d(1, 6),
            status="timeout",
            seconds=300,
            cases=(1, 0, 0),
            batch_id="nightly",
        ),
        run_doc(
            "r08",
            model="gpt2",
            hardware=["rocm"],
            started=d(3, 2),
            seconds=61,
            cases=(6, 1, 1),
            tags={"branch": "main"},
            metrics={"rocm": {"latency_ms": 9.0}},
        ),
        run_doc(
            "r09",
            model="gpt2",
            hardware=["cpu"],
            started=d(4, 2),
            status="cancelled",
            seconds=2,
            cases=(0, 0, 0),
        ),
        run_doc(
            "r10", model="t5_small", hardware=["cpu"], started=d(0, 3), seconds=12, cases=(0, 0, 3)
        ),
        run_doc(
            "r11",
            model="t5_small",
            hardware=["cpu"],
            started=d(2, 4),
            seconds=13,
            cases=(0, 0, 2),
            tags={"note": "100% green_ish"},
        ),
        run_doc(
            "r12",
            model="t5_small",
            hardware=["cpu", "rocm"],
            started=d(0, 4),
            status="running",
            seconds=None,
            cases=(0, 0, 0),
        ),
    ]
    return docs


@pytest.fixture(scope="module")
def loaded(
    tmp_path_factory: pytest.TempPathFactory, template_dbs: dict[str, Path]
) -> Iterator[tuple[TestClient, list[dict[str, Any]]]]:
    """One app with the dataset recorded, shared by this module's read-only tests."""
    docs = dataset()
    settings = make_settings(tmp_path_factory.mktemp("reads"), template_dbs)
    with TestClient(create_app(settings)) as client:
        for doc in docs:
            response = client.post(f"{B}/runs", json=doc)
            assert response.status_code == 201, response.text
        yield client, docs


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["run_id"] for r in response.json()]


def newest_first(docs: list[dict[str, Any]]) -> list[str]:
    return [d["run_id"] for d in sorted(docs, key=lambda d: instant(d["started_at"]), reverse=True)]


# --- GET /runs -------------------------------------------------------------------------------


def test_list_runs_is_newest_first_with_total(loaded: tuple[TestClient, Any]) -> None:
    client, docs = loaded
    response = client.get(f"{B}/runs")
    assert ids(response) == newest_first(docs)
    assert response.headers["X-Total-Count"] == str(len(docs))
    row = response.json()[0]
    assert row["run_id"] == "r06" and row["batch_ids"] == ["nightly"]
    assert (row["tests_passed"], row["tests_failed"], row["tests_skipped"]) == (2, 2, 2)
    assert "steps" not in row and "results" not in row


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"status": "completed"}, lambda d: d["status"] == "completed"),
        ({"status": ["error", "timeout"]}, lambda d: d["status"] in ("error", "timeout")),
        ({"model_name": "gpt2"}, lambda d: d["model_name"] == "gpt2"),
        ({"test_type": "comprehensive"}, lambda d: d["test_type"] == "comprehensive"),
        ({"hardware": "cuda"}, lambda d: "cuda" in d["hardware"]),
        ({"hardware": "rocm"}, lambda d: "rocm" in d["hardware"]),
        ({"batch_id": "nightly"}, lambda d: d.get("batch_id") == "nightly"),
        ({"tag": "branch:main"}, lambda d: d["tags"].get("branch") == "main"),
        ({"tag": "branch"}, lambda d: "branch" in d["tags"]),
        ({"tag": "note:100% green_ish"}, lambda d: d["run_id"] == "r11"),
        (
            {"since": (NOW - timedelta(days=1, hours=4)).isoformat()},
            lambda d: instant(d["started_at"]) >= NOW - timedelta(days=1, hours=4),
        ),
        (
            {"until": (NOW - timedelta(days=2, hours=1)).isoformat()},
            lambda d: instant(d["started_at"]) <= NOW - timedelta(days=2, hours=1),
        ),
        (
            {
                "model_name": "bert",
                "hardware": "cpu",
                "status": "completed",
                "since": (NOW - timedelta(days=3)).isoformat(),
                "until": NOW.isoformat(),
            },
            lambda d: (
                d["model_name"] == "bert"
                and "cpu" in d["hardware"]
                and d["status"] == "completed"
                and NOW - timedelta(days=3) <= instant(d["started_at"]) <= NOW
            ),
        ),
        ({"model_name": "nope"}, lambda d: False),
    ],
)
def test_list_runs_filters(
    loaded: tuple[TestClient, Any], params: dict[str, Any], keep: Any
) -> None:
    client, docs = loaded
    expected = newest_first([d for d in docs if keep(d)])
    response = client.get(f"{B}/runs", params=params)
    assert ids(response) == expected
    assert response.headers["X-Total-Count"] == str(len(expected))


def test_since_and_until_take_offsets_and_bounds_are_inclusive(
    loaded: tuple[TestClient, Any],
) -> None:
    client, docs = loaded
    start = instant(next(d for d in docs if d["run_id"] == "r03")["started_at"])
    assert start is not None
    local = start.astimezone(timezone(timedelta(hours=-5)))
    assert ids(
        client.get(f"{B}/runs", params={"since": local.isoformat(), "until": local.isoformat()})
    ) == ["r03"]


def test_list_runs_pages_with_limit_and_offset(loaded: tuple[TestClient, Any]) -> None:
    client, docs = loaded
    pages = []
    for offset in range(0, len(docs), 5):
        response = client.get(f"{B}/runs", params={"limit": 5, "offset": offset})
        assert response.headers["X-Total-Count"] == str(len(docs))
        pages.extend(ids(response))
    assert pages == newest_first(docs)
    assert ids(client.get(f"{B}/runs", params={"offset": 100})) == []
    assert len(ids(client.get(f"{B}/runs", params={"limit": 1000}))) == len(docs)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
        {"status": "bogus"},
        {"since": "yesterday"},
        {"limit": "x"},
    ],
)
def test_list_runs_rejects_bad_parameters(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get(f"{B}/runs", params=params)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


# --- statistics ------------------------------------------------------------------------------

SCOPES: list[dict[str, Any]] = [
    {},
    {"days": 1},
    {"days": 3},
    {"model_name": "gpt2"},
    {"hardware": "cpu"},
    {"test_type": "basic"},
    {"days": 5, "hardware": "cuda", "model_name": "bert"},
    {"model_name": "nope"},
]


@pytest.mark.parametrize("scope", SCOPES)
def test_model_stats_match_an_independent_computation(
    loaded: tuple[TestClient, Any], scope: dict[str, Any]
) -> None:
    client, docs = loaded
    response = client.get(f"{B}/models/stats", params=scope)
    assert response.status_code == 200
    expected = expected_stats(docs, "model", lambda d: in_scope(d, **scope))
    assert_stats_rows(response.json(), expected, "model_name")


@pytest.mark.parametrize("scope", SCOPES)
def test_hardware_stats_count_a_run_for_each_of_its_devices(
    loaded: tuple[TestClient, Any], scope: dict[str, Any]
) -> None:
    client, docs = loaded
    response = client.get(f"{B}/hardware/stats", params=scope)
    assert response.status_code == 200
    expected = expected_stats(docs, "hardware", lambda d: in_scope(d, **scope))
    if "hardware" in scope:
        # Narrowed to a device: that device's row (its runs may have run elsewhere too).
        expected = {k: v for k, v in expected.items() if k == scope["hardware"]}
    assert_stats_rows(response.json(), expected, "hardware")


def test_stats_rows_carry_every_spec_field(loaded: tuple[TestClient, Any]) -> None:
    client, _ = loaded
    fields = {
        "total_runs",
        "completed_runs",
        "failed_runs",
        "timeout_runs",
        "cancelled_runs",
        "tests_passed",
        "tests_failed",
        "tests_skipped",
        "pass_rate",
        "avg_duration",
        "min_duration",
        "max_duration",
        "p50_duration",
        "p95_duration",
        "latest_run",
    }
    for path, key in (("models/stats", "model_name"), ("hardware/stats", "hardware")):
        rows = client.get(f"{B}/{path}").json()
        assert all(fields | {key} <= set(row) for row in rows)
    models = {r["model_name"]: r for r in client.get(f"{B}/models/stats").json()}
    # Only skipped tests: nothing was decided, so there is no pass rate.
    assert models["t5_small"]["pass_rate"] is None
    # bert's completed runs took 10, 20, 35.5 and 100 s (by hand: continuous percentiles).
    assert models["bert"]["p50_duration"] == pytest.approx(27.75)
    assert models["bert"]["p95_duration"] == pytest.approx(90.325)
    assert models["bert"]["avg_duration"] == pytest.approx(41.375)
    assert models["bert"]["pass_rate"] == pytest.approx(21 / 25)
    devices = {r["hardware"]: r for r in client.get(f"{B}/hardware/stats").json()}
    assert devices["cuda"]["total_runs"] == 4 and devices["rocm"]["total_runs"] == 3


def test_stats_reject_bad_days(client: TestClient) -> None:
    for path in ("models/stats", "hardware/stats"):
        assert client.get(f"{B}/{path}", params={"days": 0}).status_code == 422


def test_stats_of_an_empty_database_are_empty(client: TestClient) -> None:
    assert client.get(f"{B}/models/stats").json() == []
    assert client.get(f"{B}/hardware/stats").json() == []
    report = client.get(f"{B}/performance").json()
    assert report["daily_stats"] == [] and report["performance_metrics"] == []


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"days": 1},
        {"days": 3, "model_name": "bert"},
        {"model_name": "gpt2"},
        {"days": 365},
        {"days": 2, "model_name": "nope"},
    ],
)
def test_performance_honours_days_and_model_in_every_section(
    loaded: tuple[TestClient, Any], params: dict[str, Any]
) -> None:
    client, docs = loaded
    before = datetime.now(UTC)
    response = client.get(f"{B}/performance", params=params)
    after = datetime.now(UTC)
    assert response.status_code == 200, response.text
    report = response.json()
    days = params.get("days", 30)
    model = params.get("model_name")
    scoped = [d for d in docs if in_scope(d, days=days, model_name=model)]
    assert report["days"] == days and report["model_name"] == model
    # Stamped while answering (not when the suite was collected, however slow the machine).
    assert before <= instant(report["generated_at"]) <= after
    assert_stats_rows(report["model_stats"], expected_stats(scoped, "model"), "model_name")
    assert_stats_rows(report["hardware_stats"], expected_stats(scoped, "hardware"), "hardware")
    daily = {row["day"]: row for row in report["daily_stats"]}
    want_daily = expected_daily(scoped)
    assert sorted(daily) == sorted(want_daily) == [r["day"] for r in report["daily_stats"]]
    for day, want in want_daily.items():
        for field, value in want.items():
            assert daily[day][field] == pytest.approx(value), (day, field)
    assert [r["run_id"] for r in report["latest_runs"]] == newest_first(scoped)[:20]
    metrics = {
        (r["model_name"], r["hardware"], r["metric_name"], r["metric_unit"]): r
        for r in report["performance_metrics"]
    }
    want_metrics = expected_metric_stats(scoped)
    assert set(metrics) == set(want_metrics)
    for key, want in want_metrics.items():
        for field, value in want.items():
            assert metrics[key][field] == pytest.approx(value), (key, field)


@pytest.mark.parametrize("days", [0, 366])
def test_performance_rejects_days_out_of_range(client: TestClient, days: int) -> None:
    assert client.get(f"{B}/performance", params={"days": days}).status_code == 422


# --- search ----------------------------------------------------------------------------------


def search(client: TestClient, query: str, limit: int | None = None) -> list[str]:
    body: dict[str, Any] = {"query": query}
    if limit is not None:
        body["limit"] = limit
    response = client.post(f"{B}/search", json=body)
    assert response.status_code == 200, response.text
    return sorted(r["run_id"] for r in response.json())


def test_search_is_case_insensitive_over_every_field(loaded: tuple[TestClient, Any]) -> None:
    client, _ = loaded
    assert search(client, "GPT") == ["r06", "r07", "r08", "r09"]
    assert search(client, "ROC") == ["r07", "r08", "r12"]
    assert search(client, "Fault_Tol") == ["r06"]
    assert search(client, "TIMEOUT") == ["r07"]
    assert search(client, "r1") == ["r10", "r11", "r12"]
    assert search(client, "DEV") == ["r02"]


def test_search_takes_percent_and_underscore_literally(loaded: tuple[TestClient, Any]) -> None:
    client, _ = loaded
    assert search(client, "%") == ["r11"]
    assert search(client, "100% green") == ["r11"]
    # "_" is not a wildcard: "t5_" matches t5_small, "t5x" matches nothing.
    assert search(client, "t5_") == ["r10", "r11", "r12"]
    assert search(client, "5_s") == ["r10", "r11", "r12"]
    assert search(client, "t5x") == []
    assert search(client, "n_ish") == ["r11"]
    assert search(client, "\\") == []


def test_search_honours_limit_newest_first(loaded: tuple[TestClient, Any]) -> None:
    client, docs = loaded
    response = client.post(f"{B}/search", json={"query": "r", "limit": 3})
    assert [r["run_id"] for r in response.json()] == newest_first(docs)[:3]


@pytest.mark.parametrize(
    "body",
    [
        {"query": ""},
        {"query": "x", "limit": 0},
        {"query": "x", "limit": 1001},
        {},
        {"query": "x", "q": 1},
    ],
)
def test_search_rejects_bad_bodies(client: TestClient, body: dict[str, Any]) -> None:
    assert client.post(f"{B}/search", json=body).status_code == 422
