"""Property-based: random valid documents read back as sent; random broken ones write nothing."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.core.naming import metric_unit
from app.main import create_app
from tests.components.test_suite.support import (
    B,
    app_table_counts,
    assert_matches,
    instant,
)
from tests.support import make_settings, stored_characters

PROPERTY = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
RUN_STATUSES = ["initializing", "queued", "running", "completed", "error", "timeout", "cancelled"]
STEP_STATUSES = ["pending", "running", "completed", "error", "skipped", "cancelled", "timeout"]
CASE_STATUSES = ["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
RESULT_FIELDS = {
    "tests_passed",
    "tests_failed",
    "tests_skipped",
    "test_details",
    "performance_metrics",
}

# Any Unicode but lone surrogates (NUL and control characters included).
text = st.text(stored_characters(), max_size=40)
name = st.text(stored_characters(), min_size=1, max_size=40)
device = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,12}\Z", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
moment = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=offsets
)
span = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30))
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def timed(draw: st.DrawFn) -> dict[str, Any]:
    """started_at / completed_at (ordered, either may be missing) as ISO texts."""
    start = draw(st.none() | moment)
    out: dict[str, Any] = {"started_at": start.isoformat() if start else None}
    end = start + draw(span) if start and draw(st.booleans()) else None
    if end is not None and end.year < 9999:
        out["completed_at"] = end.astimezone(draw(offsets)).isoformat()
    return out


@st.composite
def steps(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(
        st.lists(st.text(stored_characters(), min_size=1, max_size=60), unique=True, max_size=4)
    )
    out = []
    for step_name in names:
        step: dict[str, Any] = {
            "step_name": step_name,
            "status": draw(st.sampled_from(STEP_STATUSES)),
            "progress": draw(st.floats(0, 1)),
            "error": draw(st.none() | text),
            **draw(timed()),
        }
        if draw(st.booleans()):
            step["duration"] = draw(st.floats(0, 1e9))
        out.append(step)
    return out


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Return a valid recording document (without run_id; the test gives each a fresh one)."""
    start = draw(moment)
    doc: dict[str, Any] = {
        "model_name": draw(name),
        "hardware": draw(st.lists(device, min_size=1, max_size=3, unique=True)),
        "status": draw(st.sampled_from(RUN_STATUSES)),
        "started_at": start.isoformat(),
    }
    if draw(st.booleans()):
        doc["completed_at"] = (start + draw(span)).astimezone(draw(offsets)).isoformat()
    optional = {
        "test_type": st.none() | st.text(stored_characters(), max_size=32),
        "timeout": st.none() | st.integers(1, 2**31 - 1),
        "save_results": st.none() | st.booleans(),
        "progress": st.floats(0, 1),
        "current_step": st.none() | text,
        "duration": st.none() | st.floats(0, 1e12),
        "error": st.none() | text,
        "result_file": st.none() | text,
        "creator": st.none() | text,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            doc[key] = draw(strategy)
    if draw(st.booleans()):
        results: dict[str, Any] = {
            key: value
            for key, value in draw(st.dictionaries(text, json_value, max_size=3)).items()
            if key not in RESULT_FIELDS
        }
        if draw(st.booleans()):
            results["test_details"] = draw(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "name": st.text(stored_characters(), min_size=1, max_size=60),
                            "status": st.sampled_from(CASE_STATUSES),
                            "duration_ms": st.none() | st.floats(0, 1e9),
                            "error": st.none() | text,
                            "hardware": st.none() | device,
                        }
                    ),
                    max_size=5,
                )
            )
        else:
            for key in ("tests_passed", "tests_failed", "tests_skipped"):
                if draw(st.booleans()):
                    results[key] = draw(st.integers(0, 2**31 - 1))
        if draw(st.booleans()):
            results["performance_metrics"] = draw(
                st.dictionaries(
                    device, st.dictionaries(name, finite, min_size=1, max_size=3), max_size=2
                )
            )
        doc["results"] = results
    if draw(st.booleans()):
        doc["steps"] = draw(steps())
    if draw(st.booleans()):
        metrics = []
        for _ in range(draw(st.integers(0, 4))):
            metric: dict[str, Any] = {"name": draw(name), "value": draw(finite)}
            if draw(st.booleans()):
                metric["unit"] = draw(st.text(stored_characters(), max_size=32))
            if draw(st.booleans()):
                metric["hardware"] = draw(st.none() | device)
            if draw(st.booleans()):
                metric["timestamp"] = draw(moment).isoformat()
            metrics.append(metric)
        doc["metrics"] = metrics
    if draw(st.booleans()):
        doc["tags"] = draw(
            st.dictionaries(name, st.text(stored_characters(), max_size=60), max_size=4)
        )
    if draw(st.booleans()):
        paths = draw(
            st.lists(st.text(stored_characters(), min_size=1, max_size=60), unique=True, max_size=3)
        )
        doc["artifacts"] = [
            {"artifact_type": draw(name), "artifact_path": path, "description": draw(text)}
            for path in paths
        ]
    if draw(st.booleans()):
        doc["batch_id"] = draw(st.sampled_from(["batch-a", "batch-b"]))
    return doc


@pytest.fixture(scope="module")
def app_client(
    tmp_path_factory: pytest.TempPathFactory, template_dbs: dict[str, Path]
) -> Iterator[TestClient]:
    settings_ = make_settings(tmp_path_factory.mktemp("properties"), template_dbs)
    with TestClient(create_app(settings_)) as client:
        yield client


IDS = itertools.count()


def _expected_metrics(doc: dict[str, Any], got: dict[str, Any]) -> list[dict[str, Any]]:
    # Points without a timestamp belong to the run: its completion, else its start.
    default = got["completed_at"] or got["started_at"]
    points = [
        {
            "name": m["name"],
            "value": m["value"],
            "unit": m.get("unit", ""),
            "hardware": m.get("hardware"),
            "timestamp": m.get("timestamp") or default,
        }
        for m in doc.get("metrics") or []
    ]
    perf = (doc.get("results") or {}).get("performance_metrics") or {}
    points += [
        {
            "name": metric,
            "value": value,
            "unit": metric_unit(metric),
            "hardware": dev,
            "timestamp": default,
        }
        for dev, values in perf.items()
        for metric, value in values.items()
    ]
    # Read back in time order, ties in the order recorded.
    return sorted(points, key=lambda p: instant(p["timestamp"]))


def _check_read_back(doc: dict[str, Any], got: dict[str, Any]) -> None:
    nested = {"results", "steps", "metrics", "tags", "artifacts", "batch_id"}
    fields = {k: v for k, v in doc.items() if k not in nested}
    if fields.get("duration", 0) is None:
        fields.pop("duration")  # null asks for the derived duration
    assert_matches(fields, got)
    if "completed_at" in doc:
        want = doc.get("duration")
        if want is None:
            want = (instant(doc["completed_at"]) - instant(doc["started_at"])).total_seconds()
        assert got["duration"] == want
    if got["status"] in ("completed", "error", "timeout", "cancelled"):
        assert got["completed_at"] is not None
    if "progress" not in doc:
        assert got["progress"] == (1.0 if got["status"] == "completed" else 0.0)
    results = doc.get("results")
    if results is None:
        assert got["results"] is None
    else:
        details = results.get("test_details")
        if details is not None:
            statuses = [d["status"] for d in details]
            counts = {
                "tests_passed": sum(s in ("passed", "xpassed") for s in statuses),
                "tests_failed": sum(s in ("failed", "error") for s in statuses),
                "tests_skipped": sum(s in ("skipped", "xfailed") for s in statuses),
            }
        else:
            counts = {
                k: results.get(k, 0) for k in ("tests_passed", "tests_failed", "tests_skipped")
            }
        assert_matches({**results, **counts, "test_details": details or []}, got["results"])
        assert set(got["results"]) == set(results) | set(counts) | {"test_details"}
        assert_matches(counts, got)
    steps_sent = [
        {
            **s,
            "duration": s.get(
                "duration",
                (
                    (instant(s["completed_at"]) - instant(s["started_at"])).total_seconds()
                    if s.get("completed_at")
                    else None
                ),
            ),
        }
        for s in doc.get("steps") or []
    ]
    assert_matches(steps_sent, got["steps"])
    assert_matches(_expected_metrics(doc, got), got["metrics"])
    assert got["tags"] == doc.get("tags", {})
    assert_matches(doc.get("artifacts", []), got["artifacts"])
    assert got["batch_ids"] == ([doc["batch_id"]] if "batch_id" in doc else [])


@PROPERTY
@given(doc=documents())
# Floats with an exponent: PostgreSQL's JSONB once read 7.136419141247861e16 back as an integer.
@example(
    doc={
        "model_name": "m",
        "hardware": ["cpu"],
        "status": "completed",
        "started_at": "2026-01-01T00:00:00+00:00",
        "results": {"big": [7.136419141247861e16, 1e300, -1e16], "small": 2.5e-300},
    }
)
def test_random_valid_documents_read_back_as_sent(
    app_client: TestClient, doc: dict[str, Any]
) -> None:
    doc = {"run_id": f"prop-{next(IDS)}", **doc}
    response = app_client.post(f"{B}/runs", json=doc)
    assert response.status_code == 201, response.text
    got = app_client.get(f"{B}/run/{doc['run_id']}").json()
    assert got == response.json()
    _check_read_back(doc, got)
    # The same document again: nothing changes, anywhere.
    counts = app_table_counts(app_client)
    again = app_client.post(f"{B}/runs", json=doc)
    assert again.status_code == 201 and again.json() == got
    assert app_table_counts(app_client) == counts


# --- malformed documents ---------------------------------------------------------------------


def _set(path: list[str], value: Any) -> Any:
    """Return a breakage that puts `value` at `path` (objects created on the way)."""

    def apply(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value

    return apply


def _reversed_times(doc: dict[str, Any]) -> None:
    doc.update(started_at="2026-01-02T00:00:00Z", completed_at="2026-01-01T23:59:59+00:00")


BREAKAGES = [
    _set(["status"], "finished"),
    _set(["status"], None),
    _set(["model_name"], ""),
    _set(["model_name"], None),
    _set(["model_name"], 42),
    _set(["hardware"], []),
    _set(["hardware"], ["cpu", "cpu"]),
    _set(["hardware"], ["-cpu"]),
    _set(["hardware"], None),
    _set(["progress"], 2.0),
    _set(["progress"], float("nan")),
    _set(["duration"], -1.0),
    _set(["duration"], float("inf")),
    _set(["timeout"], 0),
    _set(["timeout"], 2**31),
    _set(["started_at"], "later"),
    _set(["started_at"], "10000-01-01T00:00:00Z"),
    _reversed_times,
    _set(["unknown_field"], 1),
    _set(["run_id"], "bad id!"),
    _set(["run_id"], "x" * 65),
    _set(["tags"], {"": "x"}),
    _set(["tags"], {"a": None}),
    _set(["tags"], {"a": "\ud800"}),
    _set(["model_name"], "bad\udfffname"),
    _set(["results", "tests_passed"], -1),
    _set(["results", "tests_failed"], 10**12),
    _set(["results", "extra"], float("nan")),
    _set(["results", "extra"], [1, {"deep": float("-inf")}]),
    _set(["results", "extra"], 2**70),
    _set(["results", "test_details"], [{"name": "t", "status": "weird"}]),
    _set(["results", "test_details"], [{"name": "", "status": "passed"}]),
    _set(["results", "test_details"], [{"name": "t", "status": "passed", "duration_ms": -5}]),
    _set(["results", "performance_metrics"], {"cpu": {"x": float("nan")}}),
    _set(["results", "performance_metrics"], {"cpu": {"x": float("inf")}}),
    _set(["results", "performance_metrics"], {"cpu": {"x": "fast"}}),
    _set(["steps"], [{"step_name": "a"}, {"step_name": "a"}]),
    _set(["steps"], [{"step_name": ""}]),
    _set(["steps"], [{"step_name": "a", "status": "meh"}]),
    _set(
        ["steps"],
        [
            {
                "step_name": "a",
                "started_at": "2026-01-02T00:00:00Z",
                "completed_at": "2026-01-01T00:00:00Z",
            }
        ],
    ),
    _set(["steps"], [{"step_name": "a", "duration": float("inf")}]),
    _set(["metrics"], [{"name": "x", "value": float("nan")}]),
    _set(["metrics"], [{"name": "x", "value": float("inf")}]),
    _set(["metrics"], [{"name": "x"}]),
    _set(["metrics"], [{"name": "x", "value": 1, "unit": "u" * 33}]),
    _set(["artifacts"], [{"artifact_type": "a", "artifact_path": "/p"}] * 2),
    _set(["artifacts"], [{"artifact_type": "a"}]),
    _set(["batch_id"], "no spaces allowed"),
]


@PROPERTY
@given(doc=documents(), breakages=st.lists(st.sampled_from(BREAKAGES), min_size=1, max_size=3))
def test_random_malformed_documents_are_4xx_and_write_nothing(
    app_client: TestClient, doc: dict[str, Any], breakages: list[Any]
) -> None:
    doc = {"run_id": f"bad-{next(IDS)}", **doc}
    for breakage in breakages:
        breakage(doc)
    before = app_table_counts(app_client)
    # json.dumps writes NaN and Infinity as JSON tokens, as careless clients do.
    response = app_client.post(
        f"{B}/runs", content=json.dumps(doc), headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text, doc)
    assert "detail" in response.json()
    assert app_table_counts(app_client) == before
    run_id = doc["run_id"] if isinstance(doc["run_id"], str) else "x"
    if "/" not in run_id:
        assert app_client.get(f"{B}/run/{run_id}").status_code == 404
