"""Generator reads: task lists and filters, statistics, the performance report, search."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support import make_settings

DB = "/api/generator/db"
NOW = datetime.now(UTC)


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Return the continuous (linearly interpolated) percentile, as percentile_cont does."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_percentile_helper_interpolates_linearly() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0, 0.0], 0.95) == pytest.approx(9.5)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)


@dataclass
class Seed:
    """One task of the statistics data set (times relative to now)."""

    task_id: str
    model: str
    hardware: list[str]
    status: str
    days_ago: float
    duration: float | None
    architecture: str | None = None
    batch: str | None = None
    metrics: list[tuple[str, float, str, str | None]] = field(default_factory=list)

    @property
    def started(self) -> datetime:
        return NOW - timedelta(days=self.days_ago)

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "task_id": self.task_id,
            "model_name": self.model,
            "hardware": self.hardware,
            "status": self.status,
            "started_at": self.started.isoformat(),
            "architecture": self.architecture,
            "metrics": [
                {
                    "name": name,
                    "value": value,
                    "unit": unit,
                    "hardware": hw,
                    "timestamp": self.started.isoformat(),
                }
                for name, value, unit, hw in self.metrics
            ],
        }
        if self.duration is not None:
            doc["completed_at"] = (self.started + timedelta(seconds=self.duration)).isoformat()
        if self.batch:
            doc["batch_id"] = self.batch
        return doc


SEEDS = [
    Seed("t01", "bert", ["cpu"], "completed", 0.2, 10.0, "encoder_only", "b1",
         [("render_ms", 12.0, "ms", "cpu"), ("memory_mb", 100.0, "MB", None)]),
    Seed("t02", "bert", ["cpu", "cuda"], "completed", 1.5, 20.0, "encoder_only", "b1",
         [("render_ms", 8.0, "ms", "cpu"), ("render_ms", 3.0, "ms", "cuda")]),
    Seed("t03", "bert", ["cuda"], "completed", 3.0, 35.5, "encoder_only", "b1",
         [("render_ms", 4.0, "ms", "cuda")]),
    Seed("t04", "bert", ["cuda"], "error", 3.5, 2.0, "encoder_only", "b1"),
    Seed("t05", "bert", ["cpu"], "completed", 12.0, 100.0, "encoder_only", None,
         [("render_ms", 50.0, "ms", "cpu")]),
    Seed("t06", "bert", ["rocm"], "running", 0.1, None, "encoder_only"),
    Seed("t07", "gpt2", ["cpu"], "completed", 0.3, 5.0, "decoder_only", "b2",
         [("render_ms", 1.0, "ms", "cpu"), ("render_ms", 2.0, "ms", "cpu"),
          ("render_ms", 6.0, "ms", "cpu"), ("memory_mb", 300.0, "MB", None)]),
    Seed("t08", "gpt2", ["cpu", "mps"], "completed", 2.2, 7.0, "decoder_only", "b2",
         [("memory_mb", 200.0, "MB", None)]),
    Seed("t09", "gpt2", ["mps"], "cancelled", 2.4, 1.0, "decoder_only", "b2"),
    Seed("t10", "gpt2", ["cpu"], "error", 6.5, 4.0, "decoder_only"),
    Seed("t11", "gpt2", ["cuda"], "completed", 40.0, 9.0, "decoder_only",
         metrics=[("render_ms", 99.0, "ms", "cuda")]),
    Seed("t12", "vit", ["cuda"], "completed", 1.1, 60.0, "vision",
         metrics=[("render_ms", 30.0, "ms", "cuda")]),
    Seed("t13", "vit", ["cuda", "cpu"], "completed", 5.0, 61.0, "vision"),
    Seed("t14", "vit", ["cpu"], "queued", 0.05, None, "vision"),
    Seed("t15", "vit", ["cuda"], "running", 8.0, None, "vision"),
    Seed("t16", "whisper", ["cpu"], "initializing", 200.0, None, "speech"),
]  # fmt: skip


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory, template_dbs: dict[str, Path]
) -> Iterator[TestClient]:
    """One app holding SEEDS for every read-only test of this module."""
    settings = make_settings(tmp_path_factory.mktemp("seeded"), template_dbs)
    with TestClient(create_app(settings)) as client:
        for seed in SEEDS:
            response = client.post(f"{DB}/tasks", json=seed.document())
            assert response.status_code == 201, response.text
        yield client


def instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def in_scope(
    seed: Seed, days: int | None, model: str | None = None, hardware: str | None = None
) -> bool:
    return (
        (days is None or seed.days_ago < days)
        and (model is None or seed.model == model)
        and (hardware is None or hardware in seed.hardware)
    )


def expected_counts(seeds: list[Seed]) -> dict[str, Any]:
    """Compute a stats row in Python, independently of the SQL."""
    durations = [s.duration for s in seeds if s.status == "completed" and s.duration is not None]
    return {
        "total_tasks": len(seeds),
        "completed_tasks": sum(s.status == "completed" for s in seeds),
        "failed_tasks": sum(s.status == "error" for s in seeds),
        "running_tasks": sum(s.status == "running" for s in seeds),
        "cancelled_tasks": sum(s.status == "cancelled" for s in seeds),
        "avg_duration": sum(durations) / len(durations) if durations else None,
        "min_duration": min(durations) if durations else None,
        "max_duration": max(durations) if durations else None,
        "p50_duration": percentile(durations, 0.5),
        "p95_duration": percentile(durations, 0.95),
        "latest_task": max(s.started for s in seeds),
    }


def assert_row(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if key == "latest_task":
            assert instant(got[key]) == value, key
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value), key
        else:
            assert got[key] == value, key


def expected_by(
    key: Callable[[Seed], Iterable[str]], seeds: Iterable[Seed]
) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Seed]] = defaultdict(list)
    for seed in seeds:
        for name in key(seed):
            groups[name].append(seed)
    return {name: expected_counts(members) for name, members in groups.items()}


def assert_stats(rows: list[dict[str, Any]], name: str, want: dict[str, dict[str, Any]]) -> None:
    assert {r[name] for r in rows} == set(want)
    assert len(rows) == len(want), "one row per group"
    totals = [r["total_tasks"] for r in rows]
    assert totals == sorted(totals, reverse=True), "most tasks first"
    for row in rows:
        assert_row(row, want[row[name]])


# --- GET /tasks ------------------------------------------------------------------------------


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["task_id"] for row in response.json()]


def newest_first(seeds: Iterable[Seed]) -> list[str]:
    return [s.task_id for s in sorted(seeds, key=lambda s: s.started, reverse=True)]


def test_list_tasks_newest_first_with_total(seeded: TestClient) -> None:
    response = seeded.get(f"{DB}/tasks")
    assert response.headers["X-Total-Count"] == str(len(SEEDS))
    assert ids(response) == newest_first(SEEDS)
    row = response.json()[0]
    assert "steps" not in row and row["task_id"] == "t14"


@pytest.mark.parametrize(
    ("params", "predicate"),
    [
        ({"status": "completed"}, lambda s: s.status == "completed"),
        ({"status": ["error", "cancelled"]}, lambda s: s.status in {"error", "cancelled"}),
        ({"model_name": "gpt2"}, lambda s: s.model == "gpt2"),
        ({"batch_id": "b1"}, lambda s: s.batch == "b1"),
        ({"hardware": "cuda"}, lambda s: "cuda" in s.hardware),
        ({"hardware": "mps"}, lambda s: "mps" in s.hardware),
        ({"architecture": "vision"}, lambda s: s.architecture == "vision"),
        ({"since": (NOW - timedelta(days=3)).isoformat()}, lambda s: s.days_ago <= 3),
        ({"until": (NOW - timedelta(days=3)).isoformat()}, lambda s: s.days_ago >= 3),
        (
            {
                "since": (NOW - timedelta(days=6)).isoformat(),
                "until": (NOW - timedelta(days=1)).isoformat(),
                "hardware": "cpu",
                "status": "completed",
            },
            lambda s: 1 <= s.days_ago <= 6 and "cpu" in s.hardware and s.status == "completed",
        ),
        ({"model_name": "nope"}, lambda s: False),
    ],
)
def test_list_tasks_filters(
    seeded: TestClient, params: dict[str, Any], predicate: Callable[[Seed], bool]
) -> None:
    want = newest_first(s for s in SEEDS if predicate(s))
    response = seeded.get(f"{DB}/tasks", params=params)
    assert ids(response) == want
    assert response.headers["X-Total-Count"] == str(len(want))


def test_since_and_until_include_their_bounds(seeded: TestClient) -> None:
    at = SEEDS[0].started.isoformat()
    assert ids(seeded.get(f"{DB}/tasks", params={"since": at, "until": at})) == ["t01"]


def test_list_tasks_pages_with_limit_and_offset(seeded: TestClient) -> None:
    everything = newest_first(SEEDS)
    pages = []
    for offset in range(0, len(SEEDS), 5):
        response = seeded.get(f"{DB}/tasks", params={"limit": 5, "offset": offset})
        assert response.headers["X-Total-Count"] == str(len(SEEDS))
        pages.extend(ids(response))
    assert pages == everything
    beyond = seeded.get(f"{DB}/tasks", params={"offset": 100})
    assert beyond.json() == [] and beyond.headers["X-Total-Count"] == str(len(SEEDS))


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
        {"status": "done"},
        {"since": "yesterday"},
        {"limit": "x"},
    ],
)
def test_list_tasks_rejects_bad_parameters(seeded: TestClient, params: dict[str, Any]) -> None:
    response = seeded.get(f"{DB}/tasks", params=params)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


def test_list_tasks_accepts_the_limit_bounds(seeded: TestClient) -> None:
    assert seeded.get(f"{DB}/tasks", params={"limit": 1}).status_code == 200
    assert seeded.get(f"{DB}/tasks", params={"limit": 1000}).status_code == 200


# --- statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"days": 7},
        {"days": 2},
        {"model_name": "bert"},
        {"hardware": "cuda"},
        {"days": 30, "model_name": "gpt2", "hardware": "cpu"},
        {"model_name": "nobody"},
    ],
)
def test_model_stats_match_an_independent_computation(
    seeded: TestClient, params: dict[str, Any]
) -> None:
    response = seeded.get(f"{DB}/models/stats", params=params)
    assert response.status_code == 200, response.text
    scope = [
        s
        for s in SEEDS
        if in_scope(s, params.get("days"), params.get("model_name"), params.get("hardware"))
    ]
    assert_stats(response.json(), "model_name", expected_by(lambda s: [s.model], scope))


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"days": 7},
        {"model_name": "gpt2"},
        {"hardware": "cpu"},
        {"days": 4, "model_name": "bert", "hardware": "cuda"},
    ],
)
def test_hardware_stats_have_one_row_per_device(seeded: TestClient, params: dict[str, Any]) -> None:
    response = seeded.get(f"{DB}/hardware/stats", params=params)
    assert response.status_code == 200, response.text
    device = params.get("hardware")
    scope = [s for s in SEEDS if in_scope(s, params.get("days"), params.get("model_name"))]
    want = expected_by(lambda s: [h for h in s.hardware if device in (None, h)], scope)
    assert_stats(response.json(), "hardware", want)


def test_a_task_on_two_devices_counts_for_both(client: TestClient) -> None:
    client.post(f"{DB}/tasks", json={"model_name": "m", "hardware": ["cpu", "cuda"]})
    rows = client.get(f"{DB}/hardware/stats").json()
    assert {(r["hardware"], r["total_tasks"]) for r in rows} == {("cpu", 1), ("cuda", 1)}


def test_stats_are_empty_without_tasks(client: TestClient) -> None:
    assert client.get(f"{DB}/models/stats").json() == []
    assert client.get(f"{DB}/hardware/stats").json() == []


def test_stats_reject_bad_days(seeded: TestClient) -> None:
    assert seeded.get(f"{DB}/models/stats", params={"days": 0}).status_code == 422
    assert seeded.get(f"{DB}/hardware/stats", params={"days": -1}).status_code == 422


# --- performance -----------------------------------------------------------------------------


def expected_daily(scope: list[Seed]) -> list[dict[str, Any]]:
    days: dict[str, list[Seed]] = defaultdict(list)
    for seed in scope:
        days[seed.started.date().isoformat()].append(seed)
    rows = []
    for day in sorted(days):
        members = days[day]
        durations = [s.duration for s in members if s.duration is not None]
        rows.append(
            {
                "day": day,
                "total_tasks": len(members),
                "completed_tasks": sum(s.status == "completed" for s in members),
                "failed_tasks": sum(s.status == "error" for s in members),
                "avg_duration": sum(durations) / len(durations) if durations else None,
            }
        )
    return rows


def expected_metrics(scope: list[Seed]) -> dict[tuple[Any, ...], dict[str, Any]]:
    series: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for seed in scope:
        for name, value, unit, hw in seed.metrics:
            series[(seed.model, hw, name, unit)].append(value)
    return {
        key: {
            "count": len(values),
            "avg": sum(values) / len(values),
            "min": min(values),
            "max": max(values),
            "p50": percentile(values, 0.5),
            "p95": percentile(values, 0.95),
        }
        for key, values in series.items()
    }


@pytest.mark.parametrize(
    "params", [{}, {"days": 7}, {"days": 2, "model_name": "bert"}, {"model_name": "gpt2"}]
)
def test_performance_honours_days_and_model_in_every_section(
    seeded: TestClient, params: dict[str, Any]
) -> None:
    response = seeded.get(f"{DB}/performance", params=params)
    assert response.status_code == 200, response.text
    report = response.json()
    days = params.get("days", 30)
    model = params.get("model_name")
    scope = [s for s in SEEDS if in_scope(s, days, model)]
    assert report["days"] == days and report["model_name"] == model
    assert set(report) >= {
        "daily_stats",
        "model_stats",
        "hardware_stats",
        "latest_tasks",
        "performance_metrics",
        "generated_at",
    }
    daily = report["daily_stats"]
    want_daily = expected_daily(scope)
    assert [d["day"] for d in daily] == [d["day"] for d in want_daily]
    for got, want in zip(daily, want_daily, strict=True):
        assert_row(got, want)
    assert_stats(report["model_stats"], "model_name", expected_by(lambda s: [s.model], scope))
    assert_stats(report["hardware_stats"], "hardware", expected_by(lambda s: s.hardware, scope))
    assert [t["task_id"] for t in report["latest_tasks"]] == newest_first(scope)[:20]
    metrics = {
        (m["model_name"], m["hardware"], m["metric_name"], m["metric_unit"]): m
        for m in report["performance_metrics"]
    }
    want_metrics = expected_metrics(scope)
    assert set(metrics) == set(want_metrics)
    assert len(report["performance_metrics"]) == len(want_metrics)
    for key, want in want_metrics.items():
        assert_row(metrics[key], want)
    assert abs((instant(report["generated_at"]) or NOW) - datetime.now(UTC)) < timedelta(minutes=1)


def test_performance_rejects_days_out_of_range(seeded: TestClient) -> None:
    for days in (0, 366):
        assert seeded.get(f"{DB}/performance", params={"days": days}).status_code == 422
    assert seeded.get(f"{DB}/performance", params={"days": 365}).status_code == 200


def test_performance_of_an_empty_database(client: TestClient) -> None:
    report = client.get(f"{DB}/performance").json()
    for section in (
        "daily_stats",
        "model_stats",
        "hardware_stats",
        "latest_tasks",
        "performance_metrics",
    ):
        assert report[section] == []


# --- search ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def searchable(
    tmp_path_factory: pytest.TempPathFactory, template_dbs: dict[str, Path]
) -> Iterator[TestClient]:
    """One app holding three tasks for every search test of this module."""
    docs = [
        {
            "task_id": "Search-Me-1",
            "model_name": "Org/Model_X",
            "hardware": ["cuda"],
            "architecture": "vision_text",
            "tags": {"release": "Release 50%"},
        },
        {
            "task_id": "other-2",
            "model_name": "ModelAX",
            "hardware": ["cpu"],
            "architecture": "decoder_only",
            "tags": {"release": "Release 500"},
        },
        {"task_id": "third-3", "model_name": "whisper", "hardware": ["rocm"], "status": "error"},
    ]
    settings = make_settings(tmp_path_factory.mktemp("searchable"), template_dbs)
    with TestClient(create_app(settings)) as client:
        for doc in docs:
            assert client.post(f"{DB}/tasks", json=doc).status_code == 201
        yield client


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("search-me", {"Search-Me-1"}),
        ("SEARCH-ME", {"Search-Me-1"}),
        ("model_x", {"Search-Me-1"}),
        ("l_x", {"Search-Me-1"}),
        ("50%", {"Search-Me-1"}),
        ("release 50", {"Search-Me-1", "other-2"}),
        ("%", {"Search-Me-1"}),
        ("_", {"Search-Me-1", "other-2"}),
        ("CUDA", {"Search-Me-1"}),
        ("rocm", {"third-3"}),
        ("VISION_TEXT", {"Search-Me-1"}),
        ("decoder", {"other-2"}),
        ("error", {"third-3"}),
        ("model", {"Search-Me-1", "other-2"}),
        ("nothing-here", set()),
    ],
)
def test_search_is_case_insensitive_and_literal(
    searchable: TestClient, query: str, expected: set[str]
) -> None:
    response = searchable.post(f"{DB}/search", json={"query": query})
    assert response.status_code == 200, response.text
    assert {r["task_id"] for r in response.json()} == expected


def test_search_honours_limit(searchable: TestClient) -> None:
    rows = searchable.post(f"{DB}/search", json={"query": "-", "limit": 2}).json()
    assert len(rows) == 2


@pytest.mark.parametrize(
    "body", [{"query": ""}, {"query": "x", "limit": 0}, {"query": "x", "extra": 1}, {}]
)
def test_search_rejects_bad_bodies(seeded: TestClient, body: dict[str, Any]) -> None:
    assert seeded.post(f"{DB}/search", json=body).status_code == 422
