"""Property-based: random valid task documents read back exactly; malformed ones change nothing."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.core.statuses import StepStatus, TaskStatus
from tests.support import stored_characters

DB = "/api/generator/db"
PROPERTY = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_serial = itertools.count()

# Any text JSON can carry (lone surrogates cannot be encoded as UTF-8).
text = st.text(stored_characters(), max_size=40)
names = st.text(stored_characters(), min_size=1, max_size=40)
identifiers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,30}", fullmatch=True)
devices = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,15}", fullmatch=True)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=offsets
)
spans = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30))
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=12,
)


def iso(value: datetime) -> str:
    return value.isoformat()


@st.composite
def steps(draw: st.DrawFn) -> dict[str, Any]:
    step: dict[str, Any] = {
        "status": draw(st.sampled_from([s.value for s in StepStatus])),
        "progress": draw(st.floats(0.0, 1.0)),
        "error": draw(st.none() | text),
    }
    if draw(st.booleans()):
        started = draw(instants)
        step["started_at"] = iso(started)
        if draw(st.booleans()):
            step["completed_at"] = iso(started + draw(spans))
    if draw(st.booleans()):
        step["duration"] = draw(st.floats(0.0, 1e9))
    return step


@st.composite
def metrics(draw: st.DrawFn) -> dict[str, Any]:
    point: dict[str, Any] = {
        "name": draw(names),
        "value": draw(finite),
        "unit": draw(st.text(stored_characters(), max_size=32)),
        "hardware": draw(st.none() | devices),
    }
    if draw(st.booleans()):
        point["timestamp"] = iso(draw(instants))
    return point


@st.composite
def task_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Return a valid task document; optional fields are absent or hold a valid value."""
    doc: dict[str, Any] = {
        "task_id": f"{draw(identifiers)}-{next(_serial)}",
        "model_name": draw(st.text(stored_characters(), min_size=1)),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "hardware": st.lists(devices, min_size=1, max_size=4, unique=True),
        "status": st.sampled_from([s.value for s in TaskStatus]),
        "progress": st.floats(0.0, 1.0),
        "current_step": st.none() | text,
        "template_type": st.none() | st.text(stored_characters(), max_size=64),
        "template_context": st.none() | st.dictionaries(text, json_values, max_size=4),
        "output_file": st.none() | text,
        "output_dir": st.none() | text,
        "duration": st.floats(0.0, 1e9),
        "error": st.none() | text,
        "architecture": st.none() | st.text(stored_characters(), max_size=64),
        "creator": st.none() | text,
        "task_type": names,
        "batch_id": st.none() | identifiers,
        "tags": st.dictionaries(names, text, max_size=4),
        "metrics": st.lists(metrics(), max_size=4),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            doc[key] = draw(strategy)
    if draw(st.booleans()):
        started = draw(instants)
        doc["started_at"] = iso(started)
        if draw(st.booleans()):
            doc["completed_at"] = iso(started + draw(spans))
    elif draw(st.booleans()):
        doc["completed_at"] = iso(draw(instants))
    if draw(st.booleans()):
        step_names = draw(st.lists(names, max_size=4, unique=True))
        doc["steps"] = [{"step_name": n, **draw(steps())} for n in step_names]
    return doc


def instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


TIMES = {"started_at", "completed_at", "timestamp"}


def same(key: str, stored: Any, sent: Any) -> bool:
    if key in TIMES:
        return instant(stored) == instant(sent)
    return bool(stored == sent)


def assert_exact(doc: dict[str, Any], got: dict[str, Any]) -> None:
    for key, sent in doc.items():
        if key == "steps":
            by_name = {s["step_name"]: s for s in got["steps"]}
            assert set(by_name) == {s["step_name"] for s in sent}
            for step in sent:
                for k, v in step.items():
                    assert same(k, by_name[step["step_name"]][k], v), (step["step_name"], k)
        elif key == "metrics":
            default = got["completed_at"] or got["started_at"]

            def row(m: dict[str, Any], fallback: str | None) -> tuple[Any, ...]:
                stamp = instant(m.get("timestamp") or fallback)
                return (m["name"], m["value"], m["unit"], m["hardware"], stamp)

            stored = sorted((row(m, None) for m in got["metrics"]), key=repr)
            assert stored == sorted((row(m, default) for m in sent), key=repr)
        else:
            assert same(key, got[key], sent), key


# Floats with an exponent: PostgreSQL's JSONB once read 7.136419141247861e16 back as an integer.
BIG_FLOATS = {"": 7.136419141247861e16, "k": [1e300, -1e16, 2.5e-300, 0.5]}


@PROPERTY
@given(doc=task_documents())
@example(doc={"task_id": "big-floats", "model_name": "m", "template_context": BIG_FLOATS})
def test_random_valid_documents_read_back_exactly(client: TestClient, doc: dict[str, Any]) -> None:
    response = client.post(f"{DB}/tasks", json=doc)
    assert response.status_code == 201, response.text
    assert_exact(doc, response.json())
    got = client.get(f"{DB}/task/{doc['task_id']}").json()
    assert got == response.json()
    # Re-posting the same document stores the same thing.
    again = client.post(f"{DB}/tasks", json=doc)
    assert again.status_code == 201, again.text
    assert again.json() == got


def snapshot(client: TestClient) -> tuple[Any, ...]:
    tasks = client.get(f"{DB}/tasks", params={"limit": 1000})
    batches = client.get(f"{DB}/batches", params={"limit": 1000})
    return tasks.headers["X-Total-Count"], tasks.json(), batches.json()


def corruptions() -> st.SearchStrategy[tuple[str, Any]]:
    """One way to break a document: (field, value) set on it, or a raw-JSON replacement."""
    bad_step = st.sampled_from(
        [
            [{"step_name": "a"}, {"step_name": "a"}],
            [{"step_name": ""}],
            [{"step_name": "a", "status": "finished"}],
            [{"step_name": "a", "duration": -1.0}],
            [{"step_name": "a", "progress": 2}],
            [{"step_name": "a", "unknown": 1}],
            [{"step_name": "a", "started_at": "2026-01-02T00:00:00Z",
              "completed_at": "2026-01-01T00:00:00Z"}],
        ]
    )  # fmt: skip
    bad_metric = st.sampled_from(
        [
            [{"name": "x"}],
            [{"name": "", "value": 1}],
            [{"name": "x", "value": "fast"}],
            [{"name": "x", "value": 1, "hardware": "two words"}],
            [{"name": "x", "value": 1, "unit": "u" * 33}],
            [{"name": "x", "value": 1, "extra": 1}],
        ]
    )
    return st.one_of(
        st.tuples(st.just("status"), st.sampled_from(["done", "", "COMPLETED", 1, None])),
        st.tuples(
            st.just("duration"),
            st.sampled_from([-1, -1e-9, "long"])
            | st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False),
        ),
        st.tuples(st.just("progress"), st.floats(1.0001, 1e9) | st.floats(-1e9, -0.0001)),
        st.tuples(st.just("model_name"), st.sampled_from(["", None, 5, ["m"]])),
        st.tuples(st.just("hardware"), st.sampled_from([[], ["cpu", "cpu"], "cpu", [""], None])),
        st.tuples(st.just("task_id"), st.sampled_from(["", "a/b", "x" * 65, " id", 7])),
        st.tuples(st.just("batch_id"), st.sampled_from(["", "a b", "x" * 65])),
        st.tuples(st.just("template_context"), st.sampled_from(["{}", [1], 3])),
        st.tuples(st.just("started_at"), st.sampled_from(["yesterday", "2026-02-30", "", [2026]])),
        st.tuples(st.just("tags"), st.sampled_from([{"": "x"}, {"a": 1}, ["a"]])),
        st.tuples(st.just("steps"), bad_step),
        st.tuples(st.just("metrics"), bad_metric),
        st.tuples(
            st.text(stored_characters(), min_size=1).filter(lambda k: k not in ALLOWED), json_values
        ),
        st.tuples(
            st.just("__raw__"),
            st.sampled_from(
                [
                    '"duration": NaN',
                    '"duration": Infinity',
                    '"metrics": [{"name": "x", "value": NaN}]',
                    '"template_context": {"a": Infinity}',
                ]
            ),
        ),
    )


ALLOWED = {
    "task_id", "model_name", "hardware", "status", "progress", "current_step", "template_type",
    "template_context", "output_file", "output_dir", "started_at", "completed_at", "duration",
    "error", "architecture", "creator", "task_type", "batch_id", "steps", "metrics", "tags",
}  # fmt: skip


@PROPERTY
@given(doc=task_documents(), corruption=corruptions())
def test_random_malformed_documents_are_refused_and_write_nothing(
    client: TestClient, doc: dict[str, Any], corruption: tuple[str, Any]
) -> None:
    key, value = corruption
    before = snapshot(client)
    if key == "__raw__":
        body = json.dumps(doc)[:-1] + ", " + value + "}"
        response = client.post(
            f"{DB}/tasks", content=body.encode(), headers={"content-type": "application/json"}
        )
    else:
        response = client.post(f"{DB}/tasks", json={**doc, key: value})
    assert 400 <= response.status_code < 500, (key, value, response.text)
    assert "detail" in response.json()
    assert snapshot(client) == before


@PROPERTY
@given(body=json_values)
def test_arbitrary_json_bodies_never_fail_the_server(client: TestClient, body: Any) -> None:
    before = snapshot(client)
    response = client.post(f"{DB}/tasks", json=body)
    assert response.status_code == 422, response.text
    assert snapshot(client) == before
