"""Metric points checked column by column: what MetricIn accepts, stores and refuses, unchanged.

Every test posts a list of at least 1,000 points twice: through the column-wise pass, and with
the pass switched off (`MetricColumns._fast` → None), which is MetricIn's own validation of
every point, today's path. The answers (201 with the points read back, or the 422 body) must be
equal, for runs (/api/test/db) and generation tasks (/api/generator/db) alike.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from app.components.generator.schemas import TaskCreate
from app.components.test_suite.schemas import RunCreate
from app.core.columns import MaxRows
from app.core.schemas import MetricColumns, MetricIn
from tests.support import columns_api

TESTS, GENERATOR = "/api/test/db", "/api/generator/db"
N = 1_000
AT = 500  # where a test puts its odd point
LIST = TypeAdapter(list[MetricIn])
# The owner's time, which points sent without a timestamp take.
STARTED, COMPLETED = "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"
OWNER_TIME = datetime(2026, 3, 1, 11, tzinfo=UTC)
TIMES = ("2026-03-01T10:15:00Z", "2026-03-01T12:30:00.123456+02:00", "2026-03-01T09:00:00")


def points(n: int = N) -> list[dict[str, Any]]:
    """Return `n` valid points in every shape the column-wise pass takes (fields left out too)."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        point: dict[str, Any] = {"name": f"latency_{i % 7}", "value": i * 1.5 if i % 2 else -i}
        if i % 3:
            point["unit"] = ("ms", "", "tokens/s")[i % 3]
        if i % 4:
            point["hardware"] = (None, "cuda:0", "xpu.1", "npu_2")[i % 4]
        if i % 5 == 1:
            point["timestamp"] = None
        elif i % 5:
            point["timestamp"] = TIMES[i % 3]
        out.append(point)
    return out


def with_point(point: Any, n: int = N) -> list[Any]:
    """Return `n` valid points with `point` at position AT."""
    body: list[Any] = points(n)
    body[AT] = point
    return body


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, template_dbs: dict[str, Path]) -> Iterator[Any]:
    """One app (real DuckDB); `api(method, path, body)` → (status, JSON), fast or per-row."""
    with columns_api(tmp_path_factory.mktemp("metrics"), template_dbs, MetricColumns) as call:
        yield call


IDS = itertools.count(1)
OWNERS = {
    "run": (TESTS, "/runs", "run_id", "/run/"),
    "task": (GENERATOR, "/tasks", "task_id", "/task/"),
}


def record(api: Any, owner: str, metrics: Any, *, per_row: bool = False) -> tuple[int, Any]:
    """POST a run or task with these metrics; on 201, GET its metrics back."""
    base, create, key, one = OWNERS[owner]
    key_value = f"metrics-{next(IDS)}"
    doc = {
        key: key_value,
        "model_name": "m",
        "status": "completed",
        "started_at": STARTED,
        "completed_at": COMPLETED,
        "metrics": metrics,
    }
    status, body = api("POST", base + create, doc, per_row=per_row)
    if status != 201:
        return status, body
    status, read = api("GET", f"{base}{one}{key_value}", None)
    assert status == 200
    return 201, read["metrics"]


def assert_same(api: Any, owner: str, metrics: Any) -> tuple[int, Any]:
    """Post through both paths; the answers must be equal. Returns the fast path's."""
    fast = record(api, owner, metrics)
    slow = record(api, owner, metrics, per_row=True)
    assert fast == slow
    return fast


def as_stored(metrics: list[Any], default_time: datetime) -> list[dict[str, Any]]:
    """Return the points as MetricIn validates them, stored and read back (by time, then sent)."""
    rows = [
        {**point, "timestamp": point["timestamp"] or default_time}
        for point in LIST.dump_python(LIST.validate_python(metrics))
    ]
    return sorted(rows, key=lambda row: row["timestamp"])


def read_back(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return points read through the API with their timestamps as datetimes."""
    return [
        {**row, "timestamp": datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))}
        for row in stored
    ]


# --- what MetricIn refuses: the same 422, whichever path ------------------------------------

GOOD = {"name": "m", "value": 1.0}
BAD_POINTS = {
    "name missing": {"value": 1},
    "name null": {"name": None, "value": 1},
    "name empty": {"name": "", "value": 1},
    "name too long": {"name": "n" * 257, "value": 1},
    "name a number": {"name": 5, "value": 1},
    "value missing": {"name": "m"},
    "value null": {"name": "m", "value": None},
    "value NaN": {"name": "m", "value": math.nan},
    "value Infinity": {"name": "m", "value": math.inf},
    "value -Infinity": {"name": "m", "value": -math.inf},
    "value too large an int": {"name": "m", "value": 10**400},
    "value text": {"name": "m", "value": "fast"},
    "value NaN text": {"name": "m", "value": "nan"},
    "value a list": {"name": "m", "value": [1]},
    "unit null": {**GOOD, "unit": None},
    "unit too long": {**GOOD, "unit": "u" * 33},
    "unit a number": {**GOOD, "unit": 1},
    "hardware empty": {**GOOD, "hardware": ""},
    "hardware too long": {**GOOD, "hardware": "h" * 33},
    "hardware newline": {**GOOD, "hardware": "cpu\n"},
    "hardware leading dash": {**GOOD, "hardware": "-cpu"},
    "hardware not ASCII": {**GOOD, "hardware": "gpu\u00e9"},
    "hardware space": {**GOOD, "hardware": "cuda 0"},
    "hardware a number": {**GOOD, "hardware": 0},
    "timestamp an epoch int": {**GOOD, "timestamp": 1_700_000_000},
    "timestamp an epoch float": {**GOOD, "timestamp": 1.5e9},
    "timestamp text": {**GOOD, "timestamp": "yesterday"},
    "timestamp month 13": {**GOOD, "timestamp": "2026-13-01T00:00:00Z"},
    "timestamp before year 1 in UTC": {**GOOD, "timestamp": "0001-01-01T00:00:00+01:00"},
    "timestamp after year 9999 in UTC": {**GOOD, "timestamp": "9999-12-31T23:59:59-01:00"},
    "timestamp empty": {**GOOD, "timestamp": ""},
    "timestamp a list": {**GOOD, "timestamp": ["2026-01-01"]},
    "unknown field": {**GOOD, "extra": 1},
    "point null": None,
    "point text": "m",
    "point a list": ["m", 1],
}


@pytest.mark.parametrize("point", BAD_POINTS.values(), ids=BAD_POINTS.keys())
def test_a_bad_point_in_a_large_list_gets_metricins_422(api: Any, point: Any) -> None:
    status, body = assert_same(api, "run", with_point(point))
    assert status == 422
    # ... and that 422 is MetricIn's own verdict on the list, field by field (FastAPI validates
    # bodies with from_attributes).
    with pytest.raises(ValidationError) as refused:
        LIST.validate_python(with_point(point), from_attributes=True)
    expected = refused.value.errors(include_url=False, include_context=False)
    got = body["detail"]
    assert [e["loc"] for e in got] == [["body", "metrics", *e["loc"]] for e in expected]
    assert [(e["type"], e["msg"]) for e in got] == [(e["type"], e["msg"]) for e in expected]


def test_several_bad_points_are_all_reported(api: Any) -> None:
    metrics = with_point({"name": "", "value": "x"})
    metrics[10] = {"name": "m", "value": 1, "hardware": "?", "timestamp": 5}
    for owner in OWNERS:
        status, body = assert_same(api, owner, metrics)
        assert status == 422
        assert [e["loc"][2:] for e in body["detail"]] == [
            [10, "hardware"],
            [10, "timestamp"],
            [AT, "name"],
            [AT, "value"],
        ]


@pytest.mark.parametrize("metrics", [{"name": "m", "value": 1}, "x", 1])
def test_metrics_not_a_list(api: Any, metrics: Any) -> None:
    assert assert_same(api, "run", metrics)[0] == 422


def test_a_bad_point_in_a_task_gets_the_same_422(api: Any) -> None:
    for point in ({**GOOD, "value": math.nan}, {**GOOD, "timestamp": "nope"}, {"value": 1}):
        status, body = assert_same(api, "task", with_point(point))
        assert status == 422
        assert body["detail"][0]["loc"][:3] == ["body", "metrics", AT]


# --- what MetricIn accepts: the same points stored ------------------------------------------

GOOD_POINTS = {
    "plain": None,
    "name of 256 characters": {"name": "n" * 255 + "\U0001f600", "value": 1},
    "unit of 32 characters": {**GOOD, "unit": "u" * 32},
    "hardware of 32 characters": {**GOOD, "hardware": "H" * 32},
    "every null": {**GOOD, "hardware": None, "timestamp": None},
    "value 0": {**GOOD, "value": 0},
    "value -0.0": {**GOOD, "value": -0.0},
    "value the last exact int": {**GOOD, "value": 2**53 - 1},
    "value a large int": {**GOOD, "value": 2**60 + 1},
    "value a large negative int": {**GOOD, "value": -(2**60) - 1},
    "value the largest float": {**GOOD, "value": 1.7976931348623157e308},
    "value the smallest float": {**GOOD, "value": -1.7976931348623157e308},
    "value the smallest subnormal": {**GOOD, "value": 5e-324},
    "value numeric text": {**GOOD, "value": "1.5"},
    "value true": {**GOOD, "value": True},
    "timestamp with an offset": {**GOOD, "timestamp": "2026-03-01T23:30:00-05:00"},
    "timestamp naive": {**GOOD, "timestamp": "2026-03-01T08:00:00.5"},
    "timestamp with a space": {**GOOD, "timestamp": "2026-03-01 08:00:00Z"},
    "timestamp a date": {**GOOD, "timestamp": "2026-03-01"},
    "timestamp epoch text": {**GOOD, "timestamp": "1772000000"},
    "timestamp lower-case": {**GOOD, "timestamp": "2026-03-01t08:00:00z"},
    "timestamp the last second": {**GOOD, "timestamp": "9999-12-31T23:59:59Z"},
}


@pytest.mark.parametrize("point", GOOD_POINTS.values(), ids=GOOD_POINTS.keys())
def test_a_large_list_stores_what_metricins_store(api: Any, point: Any) -> None:
    metrics = points() if point is None else with_point(point)
    status, stored = assert_same(api, "run", metrics)
    assert status == 201
    assert len(stored) == N
    # The points as MetricIn validates and dumps them (the run's time for those without one).
    assert read_back(stored) == as_stored(metrics, OWNER_TIME)


@pytest.mark.parametrize(
    "point", [None, {**GOOD, "value": "2"}, {**GOOD, "timestamp": "2026-03-01"}]
)
def test_a_task_stores_what_metricins_store(api: Any, point: Any) -> None:
    metrics = points() if point is None else with_point(point)
    status, stored = assert_same(api, "task", metrics)
    assert status == 201
    assert read_back(stored) == as_stored(metrics, OWNER_TIME)


# Lists the pass leaves to MetricIn: values it would coerce (ints beyond 2**53 are rounded).
COERCED = {"value a large int", "value a large negative int", "value numeric text", "value true"}


def test_the_pass_takes_plain_lists_and_leaves_the_rest_to_metricin() -> None:
    # What the tests above compare really went through the column-wise pass (or did not).
    for label, point in GOOD_POINTS.items():
        metrics = points() if point is None else with_point(point)
        fast = MetricColumns._fast(metrics)
        assert (fast is None) == (label in COERCED), label
        if fast is not None:
            assert fast == MetricColumns.of(LIST.validate_python(metrics)), label
    for label, bad in BAD_POINTS.items():
        assert MetricColumns._fast(with_point(bad)) is None, label


def test_an_empty_list_stores_no_points(api: Any) -> None:
    for owner in OWNERS:
        assert assert_same(api, owner, []) == (201, [])


def test_a_runs_performance_metrics_follow_its_points(api: Any) -> None:
    results = {"performance_metrics": {"cuda:0": {"latency_ms": 3, "throughput": 2.5}}}
    answers = []
    for per_row in (False, True):
        run_id = f"metrics-perf-{per_row}"
        doc = {
            "run_id": run_id,
            "model_name": "m",
            "status": "completed",
            "started_at": STARTED,
            "completed_at": COMPLETED,
            "metrics": points(),
            "results": results,
        }
        assert api("POST", f"{TESTS}/runs", doc, per_row=per_row)[0] == 201
        answers.append(api("GET", f"{TESTS}/run/{run_id}", None)[1]["metrics"])
    assert answers[0] == answers[1]
    assert len(answers[0]) == N + 2
    perf = [m for m in answers[0] if m["name"] in ("latency_ms", "throughput")]
    assert [(m["name"], m["value"], m["hardware"]) for m in perf] == [
        ("latency_ms", 3.0, "cuda:0"),
        ("throughput", 2.5, "cuda:0"),
    ]


# --- POST /run/{id}/metrics and /task/{id}/metrics -----------------------------------------


@pytest.mark.parametrize("owner", OWNERS)
def test_post_metrics_appends_the_same_points(api: Any, owner: str) -> None:
    base, create, key, one = OWNERS[owner]
    answers = []
    timed = [{**p, "timestamp": p.get("timestamp") or TIMES[0]} for p in points()]
    for per_row in (False, True):
        key_value = f"metrics-add-{owner}-{per_row}"
        assert api("POST", base + create, {key: key_value, "model_name": "m"})[0] == 201
        path = f"{base}{one}{key_value}/metrics"
        assert api("POST", path, timed, per_row=per_row) == (201, {"added": N})
        assert api("POST", path, timed[:3], per_row=per_row) == (201, {"added": 3})
        bad = api("POST", path, with_point({**GOOD, "unit": None}), per_row=per_row)
        answers.append((bad, api("GET", f"{base}{one}{key_value}", None)[1]["metrics"]))
    assert answers[0] == answers[1]
    (status, body), stored = answers[0]
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", AT, "unit"]
    assert read_back(stored) == as_stored(timed + timed[:3], OWNER_TIME)


def test_max_rows_is_lists_max_length() -> None:
    limited = TypeAdapter(Annotated[MetricColumns, MaxRows(3)])
    plain = TypeAdapter(Annotated[list[MetricIn], Field(max_length=3)])
    assert limited.json_schema() == plain.json_schema()
    assert len(limited.validate_python(points(3))) == 3
    for too_many in (points(4), MetricColumns.of(LIST.validate_python(points(4)))):
        with pytest.raises(ValidationError) as got:
            limited.validate_python(too_many)
        with pytest.raises(ValidationError) as expected:
            plain.validate_python(points(4))
        assert got.value.errors(include_url=False, include_input=False) == expected.value.errors(
            include_url=False, include_input=False
        )


# --- the documents elsewhere: dumps and schema as list[MetricIn] ----------------------------


@pytest.mark.parametrize("model", [RunCreate, TaskCreate])
def test_documents_dump_metrics_as_list_of_metricin(model: Any) -> None:
    metrics = with_point({**GOOD, "value": 7})
    doc = model.model_validate({"model_name": "m", "metrics": metrics})
    assert isinstance(doc.metrics, MetricColumns)
    as_list = LIST.validate_python(metrics)
    assert doc.model_dump()["metrics"] == LIST.dump_python(as_list)
    assert json.loads(doc.model_dump_json())["metrics"] == json.loads(LIST.dump_json(as_list))
    assert list(doc.metrics) == as_list
    assert model.model_validate(doc.model_dump(exclude_unset=True)) == doc
    assert model.model_json_schema()["properties"]["metrics"]["anyOf"][0] == {
        "items": {"$ref": "#/$defs/MetricIn"},
        "type": "array",
    }


def test_models_built_in_code_keep_their_values() -> None:
    # The runners pass MetricIn models (and JUnit imports datetimes): MetricIn's path.
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    built = [MetricIn(name="x", value=1, timestamp=at), MetricIn(name="y", value=2.5)]
    doc = RunCreate.model_validate({"model_name": "m", "metrics": built})
    assert list(doc.metrics or []) == built
    doc = RunCreate.model_validate({"model_name": "m", "metrics": [{**GOOD, "timestamp": at}]})
    assert doc.metrics is not None and doc.metrics.timestamp == [at]
