"""Per-test outcomes checked column by column: what CaseIn accepts, stores and refuses, unchanged.

Every test posts a list of at least 1,000 rows twice: through the column-wise pass, and with
the pass switched off (`CaseColumns._fast` → None), which is CaseIn's own validation of every
row, today's path. The answers (201 with the rows read back, or the 422 body) must be equal.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from app.components.test_suite.schemas import (
    CaseColumns,
    CaseIn,
    ResultsIn,
)
from app.core.columns import MaxRows
from tests.components.test_suite.support import B
from tests.support import columns_api

N = 1_000
AT = 500  # where a test puts its odd row
STATUSES = ["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
LIST = TypeAdapter(list[CaseIn])


def rows(n: int = N) -> list[dict[str, Any]]:
    """Return `n` valid rows in every shape the column-wise pass takes (fields left out too)."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {"name": f"tests/test_x.py::test_{i}", "status": STATUSES[i % 6]}
        if i % 3:
            row["duration_ms"] = i * 1.25 if i % 2 else i  # floats and ints
        if i % 5 == 0:
            row["error"] = f"AssertionError {i}" if i % 2 else None
        if i % 4:
            row["hardware"] = ("cpu", "cuda:0", "xpu.1", "npu_2")[i % 4]
        out.append(row)
    return out


def with_row(row: Any, n: int = N) -> list[Any]:
    """Return `n` valid rows with `row` at position AT."""
    body: list[Any] = rows(n)
    body[AT] = row
    return body


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, template_dbs: dict[str, Path]) -> Iterator[Any]:
    """One app (real DuckDB); `api(method, path, body)` → (status, JSON), fast or per-row."""
    folder = tmp_path_factory.mktemp("columns")
    with columns_api(folder, template_dbs, CaseColumns, prefix=B) as call:
        yield call


IDS = itertools.count(1)


def record(api: Any, details: Any, *, per_row: bool = False) -> tuple[int, Any]:
    """POST /runs with these test_details; on 201, GET the run's results back."""
    run_id = f"cols-{next(IDS)}"
    doc = {
        "run_id": run_id,
        "model_name": "m",
        "status": "completed",
        "results": {"test_details": details},
    }
    status, body = api("POST", "/runs", doc, per_row=per_row)
    if status != 201:
        return status, body
    status, run = api("GET", f"/run/{run_id}", None)
    assert status == 200
    return 201, run["results"]


def assert_same(api: Any, details: Any) -> tuple[int, Any]:
    """Post through both paths; the answers must be equal. Returns the fast path's."""
    fast = record(api, details)
    slow = record(api, details, per_row=True)
    assert fast == slow
    return fast


# --- what CaseIn refuses: the same 422, whichever path --------------------------------------

GOOD = {"name": "t", "status": "passed"}
BAD_ROWS = {
    "name missing": {"status": "passed"},
    "name null": {"name": None, "status": "passed"},
    "name empty": {"name": "", "status": "passed"},
    "name too long": {"name": "n" * 1025, "status": "passed"},
    "name a number": {"name": 5, "status": "passed"},
    "status missing": {"name": "t"},
    "status unknown": {"name": "t", "status": "unknown"},
    "status other case": {"name": "t", "status": "PASSED"},
    "status padded": {"name": "t", "status": "passed "},
    "status null": {"name": "t", "status": None},
    "status a number": {"name": "t", "status": 1},
    "status a list": {"name": "t", "status": ["passed"]},
    "duration negative": {**GOOD, "duration_ms": -1},
    "duration negative float": {**GOOD, "duration_ms": -0.5},
    "duration NaN": {**GOOD, "duration_ms": math.nan},
    "duration Infinity": {**GOOD, "duration_ms": math.inf},
    "duration too large an int": {**GOOD, "duration_ms": 10**400},
    "duration text": {**GOOD, "duration_ms": "fast"},
    "duration a list": {**GOOD, "duration_ms": [1]},
    "error too long": {**GOOD, "error": "e" * 100_001},
    "error a number": {**GOOD, "error": 1},
    "hardware empty": {**GOOD, "hardware": ""},
    "hardware too long": {**GOOD, "hardware": "h" * 33},
    "hardware newline": {**GOOD, "hardware": "cpu\n"},
    "hardware leading dash": {**GOOD, "hardware": "-cpu"},
    "hardware not ASCII": {**GOOD, "hardware": "gpu\u00e9"},
    "hardware space": {**GOOD, "hardware": "cuda 0"},
    "hardware a number": {**GOOD, "hardware": 0},
    "unknown field": {**GOOD, "extra": 1},
    "row null": None,
    "row text": "passed",
    "row a list": ["t", "passed"],
}


@pytest.mark.parametrize("row", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_a_bad_row_in_a_large_list_gets_caseins_422(api: Any, row: Any) -> None:
    status, body = assert_same(api, with_row(row))
    assert status == 422
    # ... and that 422 is CaseIn's own verdict on the list, field by field (FastAPI validates
    # bodies with from_attributes).
    with pytest.raises(ValidationError) as refused:
        LIST.validate_python(with_row(row), from_attributes=True)
    expected = refused.value.errors(include_url=False, include_context=False)
    got = body["detail"]
    assert [e["loc"] for e in got] == [
        ["body", "results", "test_details", *e["loc"]] for e in expected
    ]
    assert [(e["type"], e["msg"]) for e in got] == [(e["type"], e["msg"]) for e in expected]


def test_several_bad_rows_are_all_reported(api: Any) -> None:
    details = with_row({"name": "", "status": "nope"})
    details[10] = {"name": "t", "status": "passed", "duration_ms": -1, "hardware": "?"}
    status, body = assert_same(api, details)
    assert status == 422
    assert [e["loc"][3:] for e in body["detail"]] == [
        [10, "duration_ms"],
        [10, "hardware"],
        [AT, "name"],
        [AT, "status"],
    ]


@pytest.mark.parametrize("details", [{"name": "t", "status": "passed"}, "x", 1])
def test_test_details_not_a_list(api: Any, details: Any) -> None:
    assert assert_same(api, details)[0] == 422


# --- what CaseIn accepts: the same rows stored ----------------------------------------------

GOOD_ROWS = {
    "plain": None,
    "name of 1,024 characters": {"name": "n" * 1023 + "\U0001f600", "status": "failed"},
    "error of 100,000 characters": {**GOOD, "error": "e" * 100_000},
    "empty error": {**GOOD, "error": ""},
    "hardware of 32 characters": {**GOOD, "hardware": "H" * 32},
    "every null": {**GOOD, "duration_ms": None, "error": None, "hardware": None},
    "duration 0": {**GOOD, "duration_ms": 0},
    "duration -0.0": {**GOOD, "duration_ms": -0.0},
    "duration a large int": {**GOOD, "duration_ms": 2**60 + 1},
    "duration the largest float": {**GOOD, "duration_ms": 1.7976931348623157e308},
    "duration numeric text": {**GOOD, "duration_ms": "1.5"},
    "duration true": {**GOOD, "duration_ms": True},
}


@pytest.mark.parametrize("row", GOOD_ROWS.values(), ids=GOOD_ROWS.keys())
def test_a_large_list_stores_what_caseins_store(api: Any, row: Any) -> None:
    details = rows() if row is None else with_row(row)
    status, results = assert_same(api, details)
    assert status == 201
    stored = results["test_details"]
    assert len(stored) == N
    # The rows as CaseIn validates and dumps them, in the order sent.
    assert stored == [
        {**case, "status": case["status"].value}
        for case in LIST.dump_python(LIST.validate_python(details))
    ]
    assert results["tests_passed"] == sum(r["status"] in ("passed", "xpassed") for r in stored)
    assert results["tests_failed"] == sum(r["status"] in ("failed", "error") for r in stored)
    assert results["tests_skipped"] == sum(r["status"] in ("skipped", "xfailed") for r in stored)


def test_an_empty_list_stores_no_rows(api: Any) -> None:
    status, results = assert_same(api, [])
    assert status == 201
    assert results["test_details"] == []
    assert (results["tests_passed"], results["tests_failed"], results["tests_skipped"]) == (0, 0, 0)


# --- the other routes that take rows --------------------------------------------------------


def running(run_id: str) -> dict[str, Any]:
    """Return the document of a running run with no results."""
    return {"run_id": run_id, "model_name": "m", "status": "running"}


def test_put_results_and_complete(api: Any) -> None:
    for per_row in (False, True):
        run_id = f"cols-put-{per_row}"
        assert api("POST", "/runs", running(run_id))[0] == 201
        assert (
            api("PUT", f"/run/{run_id}/results", {"test_details": rows()}, per_row=per_row)[0]
            == 200
        )
        bad = api(
            "PUT",
            f"/run/{run_id}/results",
            {"test_details": with_row({"name": "t"})},
            per_row=per_row,
        )
        assert bad[0] == 422
        done = api(
            "POST",
            f"/run/{run_id}/complete",
            {"results": {"test_details": rows(N + 1)}},
            per_row=per_row,
        )
        assert done[0] == 200
    fast, slow = (api("GET", f"/run/cols-put-{p}", None)[1] for p in (False, True))
    assert fast["results"] == slow["results"]
    assert len(fast["results"]["test_details"]) == N + 1


def test_post_cases_appends_the_same_rows(api: Any) -> None:
    answers = []
    for per_row in (False, True):
        run_id = f"cols-add-{per_row}"
        assert api("POST", "/runs", running(run_id))[0] == 201
        assert api("POST", f"/run/{run_id}/cases", rows(), per_row=per_row) == (201, {"added": N})
        assert api("POST", f"/run/{run_id}/cases", rows(3), per_row=per_row) == (201, {"added": 3})
        bad = api(
            "POST", f"/run/{run_id}/cases", with_row({**GOOD, "status": "nope"}), per_row=per_row
        )
        answers.append((bad, api("GET", f"/run/{run_id}", None)[1]["results"]))
    assert answers[0] == answers[1]
    (status, body), results = answers[0]
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", AT, "status"]
    assert [r["name"] for r in results["test_details"]] == [r["name"] for r in rows() + rows(3)]


def test_max_cases_is_lists_max_length() -> None:
    limited = TypeAdapter(Annotated[CaseColumns, MaxRows(3)])
    plain = TypeAdapter(Annotated[list[CaseIn], Field(max_length=3)])
    assert limited.json_schema() == plain.json_schema()
    assert len(limited.validate_python(rows(3))) == 3
    for too_many in (rows(4), CaseColumns.of(LIST.validate_python(rows(4)))):
        with pytest.raises(ValidationError) as got:
            limited.validate_python(too_many)
        with pytest.raises(ValidationError) as expected:
            plain.validate_python(rows(4))
        assert got.value.errors(include_url=False, include_input=False) == expected.value.errors(
            include_url=False, include_input=False
        )


# --- the document elsewhere: dumps and schema as list[CaseIn] -------------------------------


def test_results_dump_as_list_of_casein() -> None:
    details = with_row({**GOOD, "duration_ms": 7})
    results = ResultsIn.model_validate({"test_details": details, "extra": 1})
    assert isinstance(results.test_details, CaseColumns)
    as_list = LIST.validate_python(details)
    assert results.model_dump()["test_details"] == LIST.dump_python(as_list)
    assert json.loads(results.model_dump_json())["test_details"] == json.loads(
        LIST.dump_json(as_list)
    )
    assert list(results.test_details) == as_list
    assert ResultsIn.model_validate(results.model_dump()) == results
    assert ResultsIn.model_json_schema()["properties"]["test_details"]["anyOf"][0] == {
        "items": {"$ref": "#/$defs/CaseIn"},
        "type": "array",
    }
