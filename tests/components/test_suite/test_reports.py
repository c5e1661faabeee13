"""Reports on a planted history: flaky, broken, fixed, newly failing, regressions, noise.

Every verdict is checked against an independent computation over the documents posted.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from scipy.stats import mannwhitneyu

from app.__main__ import main as cli_main
from app.components.test_suite.reports_router import CompareAnswer, RegressionsAnswer, TrendsAnswer
from app.components.test_suite.verdicts import change_verdict, direction, mann_whitney_ps
from app.core.stats import downsample

B = "/api/test/db"
NOW = datetime.now(UTC).replace(microsecond=0)
RUNS = 14  # one a day, the newest 1 hour ago
FLAKY_FAILS = {1, 4, 5, 9}  # run indexes (0 = oldest) where t_flaky fails
OUTAGE = 7  # this run fails every test: an outage, not flakiness
FILLERS = [f"tests/test_m.py::test_fill_{i}" for i in range(10)]


def iso(t: datetime) -> str:
    return t.isoformat()


def started(i: int) -> datetime:
    return NOW - timedelta(days=RUNS - 1 - i, hours=1)


def statuses(i: int) -> dict[str, str]:
    """Return the planted status of every test in run i."""
    recent = i >= RUNS - 2  # the last two runs
    s = {
        "tests/test_m.py::test_stable": "passed",
        "tests/test_m.py::test_flaky": "failed" if i in FLAKY_FAILS else "passed",
        "tests/test_m.py::test_broken": "failed",
        "tests/test_m.py::test_newfail": "failed" if recent else "passed",
        "tests/test_m.py::test_fixed": "failed" if i < 3 else "passed",
        "tests/test_m.py::test_skip": "skipped",
    }
    if i in (2, 5, 8, 11):  # four results: below a floor of 5
        s["tests/test_m.py::test_rare"] = "failed" if i == 5 else "passed"
    if i in (0, 3, 6, 9, 12):  # exactly five results, flipping
        s["tests/test_m.py::test_five"] = "failed" if i in (3, 9) else "passed"
    s.update({name: "passed" for name in FILLERS})
    if i == OUTAGE:
        s = {name: "failed" for name in s}
    return s


def metrics(i: int, rng: random.Random) -> dict[str, float]:
    recent = i >= RUNS - 3
    return {
        "latency_ms": (15.0 if recent else 10.0) + rng.uniform(-0.5, 0.5),
        "throughput_per_sec": (130.0 if recent else 100.0) + rng.uniform(-2, 2),
        "memory_mb": 500.0 + rng.uniform(-5, 5),  # noise only
    }


def history() -> list[dict[str, Any]]:
    """Return the planted runs of model m on cpu (plus a retried pair in one batch)."""
    rng = random.Random(7)
    docs = []
    for i in range(RUNS):
        t = started(i)
        docs.append(
            {
                "run_id": f"r{i:02d}",
                "model_name": "m",
                "hardware": ["cpu"],
                "status": "completed",
                "started_at": iso(t),
                "completed_at": iso(t + timedelta(seconds=60 + i % 3)),  # noise
                "results": {
                    "test_details": [
                        {"name": n, "status": st, "duration_ms": 10.0 + i, "error": f"boom {i}"}
                        if st == "failed"
                        else {"name": n, "status": st, "duration_ms": 10.0 + i}
                        for n, st in statuses(i).items()
                    ],
                    "performance_metrics": {"cpu": metrics(i, rng)},
                },
                "tags": {"commit": f"c{i}"},
            }
        )
    # Model "r": a retried test failing then passing on the same commit in one batch.
    for j, st in enumerate(["passed", "passed", "failed", "passed", "passed", "passed"]):
        t = NOW - timedelta(hours=30 - j)
        docs.append(
            {
                "run_id": f"retry{j}",
                "model_name": "r",
                "hardware": ["cuda"],
                "status": "completed",
                "started_at": iso(t),
                "completed_at": iso(t + timedelta(seconds=5)),
                "results": {
                    "test_details": [
                        {"name": "tests/test_r.py::test_retry", "status": st},
                        *({"name": n, "status": "passed"} for n in FILLERS),
                    ]
                },
                "tags": {"commit": "same" if j in (2, 3) else f"x{j}"},
                **({"batch_id": "retry-batch"} if j in (2, 3) else {}),
            }
        )
    return docs


@pytest.fixture
def planted(client: TestClient) -> list[dict[str, Any]]:
    docs = history()
    for doc in docs:
        assert client.post(f"{B}/runs", json=doc).status_code == 201
    return docs


# --- independent computations ----------------------------------------------------------------


def decided_series(
    docs: list[dict[str, Any]], model: str, test: str, max_failed_fraction: float
) -> list[tuple[datetime, str]]:
    out = []
    for doc in docs:
        if doc["model_name"] != model:
            continue
        details = doc["results"]["test_details"]
        failed = sum(d["status"] == "failed" for d in details)
        passed = sum(d["status"] == "passed" for d in details)
        if failed > max_failed_fraction * (failed + passed):
            continue
        for d in details:
            if d["name"] == test and d["status"] in ("passed", "failed"):
                out.append((datetime.fromisoformat(doc["started_at"]), d["status"]))
    return sorted(out)


def retry_groups(docs: list[dict[str, Any]], model: str, test: str) -> int:
    """Count batches and commit tags in which the test both failed and passed."""
    seen: dict[str, set[str]] = {}
    for doc in docs:
        if doc["model_name"] != model:
            continue
        keys = [f"c:{doc['tags']['commit']}"] + (
            [f"b:{doc['batch_id']}"] if "batch_id" in doc else []
        )
        for d in doc["results"]["test_details"]:
            if d["name"] == test and d["status"] in ("passed", "failed"):
                for key in keys:
                    seen.setdefault(key, set()).add(d["status"])
    return sum(len(v) == 2 for v in seen.values())


def expected_verdict(series: list[tuple[datetime, str]], min_runs: int, retried: bool) -> str:
    results = [s for _, s in series]
    changes = sum(a != b for a, b in itertools.pairwise(results))
    if len(results) < min_runs:
        return "insufficient_data"
    if "failed" not in results:
        return "healthy"
    if retried or changes >= 2:
        return "flaky"
    return "broken" if results[-1] == "failed" else "healthy"


def wilson_by_quadratic(k: int, n: int) -> tuple[float, float]:
    # The interval's ends solve (p - k/n)^2 = z^2 p (1 - p) / n for p.
    z = 1.959963984540054
    phat = k / n
    a = 1 + z * z / n
    b = -(2 * phat + z * z / n)
    c = phat * phat
    disc = math.sqrt(b * b - 4 * a * c)
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


# --- tests -----------------------------------------------------------------------------------


def test_flaky_verdicts_match_an_independent_computation(
    client: TestClient, planted: list[dict[str, Any]]
) -> None:
    verdicts = ["flaky", "broken", "healthy", "insufficient_data"]
    response = client.get(f"{B}/flaky", params={"verdict": verdicts, "min_runs": 5})
    assert response.status_code == 200, response.text
    rows = response.json()
    assert int(response.headers["x-total-count"]) == len(rows)
    got = {(r["model_name"], r["test_id"]): r for r in rows}
    tests = {(d["model_name"], c["name"]) for d in planted for c in d["results"]["test_details"]}
    skipped_only = {("m", "tests/test_m.py::test_skip")}
    assert set(got) == tests - skipped_only
    for (model, test), row in got.items():
        series = decided_series(planted, model, test, 0.5)
        retried = retry_groups(planted, model, test) > 0
        assert row["runs"] == len(series), test
        k = sum(s == "failed" for _, s in series)
        assert row["failures"] == k
        assert row["verdict"] == expected_verdict(series, 5, retried), test
        low, high = wilson_by_quadratic(k, len(series))
        assert row["failure_rate_low"] == pytest.approx(low, abs=1e-9)
        assert row["failure_rate_high"] == pytest.approx(high, abs=1e-9)
        assert row["retry_passes"] == retry_groups(planted, model, test)
    assert got[("m", "tests/test_m.py::test_flaky")]["verdict"] == "flaky"
    assert got[("m", "tests/test_m.py::test_broken")]["verdict"] == "broken"
    assert got[("m", "tests/test_m.py::test_newfail")]["verdict"] == "broken"
    assert got[("m", "tests/test_m.py::test_fixed")]["verdict"] == "healthy"
    assert got[("m", "tests/test_m.py::test_stable")]["verdict"] == "healthy"
    assert got[("m", "tests/test_m.py::test_rare")]["verdict"] == "insufficient_data"
    assert got[("r", "tests/test_r.py::test_retry")]["verdict"] == "flaky"
    # Most hurtful first: flaky before broken, then by failures.
    order = [r["verdict"] for r in rows]
    rank = ["flaky", "broken", "insufficient_data", "healthy"]
    assert order == sorted(order, key=rank.index)


def test_flaky_pages_in_the_hurt_order(client: TestClient, planted: list[dict[str, Any]]) -> None:
    everything = ["flaky", "broken", "healthy", "insufficient_data"]
    whole = client.get(f"{B}/flaky", params={"verdict": everything, "limit": 1000})
    rows = whole.json()
    rank = {"flaky": 0, "broken": 1, "insufficient_data": 2, "healthy": 3}
    hurt = [
        (
            rank[r["verdict"]],
            -r["failures"],
            -r["flips"],
            r["model_name"],
            r["test_id"],
            r["hardware"] or "",
        )
        for r in rows
    ]
    assert hurt == sorted(hurt) and len(rows) > 6
    for size in (2, 5):
        paged: list[dict[str, Any]] = []
        for offset in range(0, len(rows), size):
            page = client.get(
                f"{B}/flaky", params={"verdict": everything, "limit": size, "offset": offset}
            )
            assert page.headers["x-total-count"] == str(len(rows))
            paged += page.json()
        assert paged == rows
    past = client.get(f"{B}/flaky", params={"verdict": everything, "offset": len(rows) + 5})
    assert past.json() == [] and past.headers["x-total-count"] == str(len(rows))
    only = client.get(f"{B}/flaky", params={"verdict": ["broken"], "limit": 1000}).json()
    assert only == [r for r in rows if r["verdict"] == "broken"]


def test_flaky_floor_at_its_boundary(client: TestClient, planted: list[dict[str, Any]]) -> None:
    five = "tests/test_m.py::test_five"
    everything = ["flaky", "broken", "healthy", "insufficient_data"]
    at = client.get(f"{B}/flaky", params={"min_runs": 5, "verdict": everything}).json()
    above = client.get(f"{B}/flaky", params={"min_runs": 6, "verdict": everything}).json()
    assert [r["verdict"] for r in at if r["test_id"] == five] == ["flaky"]
    assert [r["verdict"] for r in above if r["test_id"] == five] == ["insufficient_data"]
    # Below the floor never healthy: a test passing 13 times is insufficient at 14.
    stable = "tests/test_m.py::test_stable"
    high = client.get(f"{B}/flaky", params={"min_runs": 14, "verdict": everything}).json()
    assert [r["verdict"] for r in high if r["test_id"] == stable] == ["insufficient_data"]
    low = client.get(f"{B}/flaky", params={"min_runs": 13, "verdict": everything}).json()
    assert [r["verdict"] for r in low if r["test_id"] == stable] == ["healthy"]


def test_flaky_outage_runs_are_left_out(client: TestClient, planted: list[dict[str, Any]]) -> None:
    stable = "tests/test_m.py::test_stable"
    counted = client.get(
        f"{B}/flaky", params={"max_failed_fraction": 1.0, "verdict": ["flaky", "healthy"]}
    ).json()
    row = next(r for r in counted if r["test_id"] == stable)
    # With the outage counted, a test that never failed on its own looks flaky (Trunk's pitfall).
    assert (row["runs"], row["failures"], row["verdict"]) == (RUNS, 1, "flaky")
    default = client.get(f"{B}/flaky").json()
    assert stable not in {r["test_id"] for r in default}
    assert {r["verdict"] for r in default} <= {"flaky", "broken"}


def test_tests_list_and_history(client: TestClient, planted: list[dict[str, Any]]) -> None:
    response = client.get(f"{B}/tests", params={"model_name": "m", "limit": 1000})
    assert response.status_code == 200, response.text
    rows = {r["test_id"]: r for r in response.json()}
    m_docs = [d for d in planted if d["model_name"] == "m"]
    names = {c["name"] for d in m_docs for c in d["results"]["test_details"]}
    assert set(rows) == names
    assert int(response.headers["x-total-count"]) == len(names)
    for name, row in rows.items():
        results = [
            (datetime.fromisoformat(d["started_at"]), c)
            for d in m_docs
            for c in d["results"]["test_details"]
            if c["name"] == name
        ]
        results.sort(key=lambda x: x[0])
        st = [c["status"] for _, c in results]
        decided = [s for s in st if s != "skipped"]
        assert row["runs"] == len(st)
        assert row["passed"] == st.count("passed") and row["failed"] == st.count("failed")
        assert row["skipped"] == st.count("skipped")
        assert row["last_status"] == st[-1]
        assert row["flips"] == sum(a != b for a, b in itertools.pairwise(decided))
        durations = sorted(c["duration_ms"] for _, c in results)
        assert row["p50_duration_ms"] == pytest.approx(statistics.median(durations))
        fails = [(t, c) for t, c in results if c["status"] == "failed"]
        assert row["last_failure_message"] == (fails[-1][1]["error"] if fails else None)
    # Failing now first.
    first = response.json()[0]
    assert first["last_status"] == "failed"
    page = client.get(f"{B}/tests", params={"q": "FILL", "limit": 3, "offset": 3})
    assert page.headers["x-total-count"] == "10" and len(page.json()) == 3
    hist = client.get(f"{B}/tests/history", params={"test_id": "tests/test_m.py::test_flaky"})
    assert hist.status_code == 200
    got = [(h["run_id"], h["status"]) for h in hist.json()]
    expected = [(f"r{i:02d}", statuses(i)["tests/test_m.py::test_flaky"]) for i in range(RUNS)]
    assert got == expected[::-1]
    assert client.get(f"{B}/tests/history", params={"test_id": ""}).status_code == 422
    assert client.get(f"{B}/tests", params={"bogus": 1}).status_code == 422
    failed_runs = client.get(f"{B}/tests", params={"outcome": "failed", "q": "test_stable"})
    assert failed_runs.json()[0]["runs"] == RUNS  # every m run has a failing test


def test_regressions_direction_significance_and_floor(
    client: TestClient, planted: list[dict[str, Any]]
) -> None:
    every = ["regression", "improvement", "changed", "unchanged", "insufficient_data"]
    params = {
        "days": 3,
        "baseline_days": 28,
        "min_samples": 3,
        "threshold": 0.1,
        "verdict": every,
    }
    response = client.get(f"{B}/regressions", params={**params, "model_name": "m"})
    assert response.status_code == 200, response.text
    answer = response.json()
    series = {r["metric"]: r for r in answer["series"]}
    split = NOW - timedelta(days=3)
    m_docs = [d for d in planted if d["model_name"] == "m"]
    for name in ("latency_ms", "throughput_per_sec", "memory_mb"):
        before = [
            d["results"]["performance_metrics"]["cpu"][name]
            for d in m_docs
            if datetime.fromisoformat(d["started_at"]) < split
        ]
        after = [
            d["results"]["performance_metrics"]["cpu"][name]
            for d in m_docs
            if datetime.fromisoformat(d["started_at"]) >= split
        ]
        row = series[name]
        assert (row["baseline_n"], row["recent_n"]) == (len(before), len(after)) == (11, 3)
        assert row["baseline_median"] == pytest.approx(statistics.median(before))
        assert row["recent_median"] == pytest.approx(statistics.median(after))
        rel = (statistics.median(after) - statistics.median(before)) / statistics.median(before)
        assert row["relative_change"] == pytest.approx(rel)
        if abs(rel) >= 0.1:
            p = mannwhitneyu(before, after, alternative="two-sided").pvalue
            assert row["p_value"] == pytest.approx(p)
            assert row["change_run_id"] == f"r{RUNS - 3:02d}"
    assert series["latency_ms"]["verdict"] == "regression"
    assert series["throughput_per_sec"]["verdict"] == "improvement"
    assert series["memory_mb"]["verdict"] == "unchanged"
    assert series["run_duration"]["verdict"] == "unchanged"
    assert series["pass_rate"]["better"] == "higher"
    failing = [(f["model_name"], f["test_id"]) for f in answer["newly_failing"]]
    assert failing == [("m", "tests/test_m.py::test_newfail")]
    # The floor: 3 recent runs are enough at min_samples=3, not at 4.
    more = client.get(f"{B}/regressions", params={**params, "min_samples": 4, "model_name": "m"})
    assert {r["verdict"] for r in more.json()["series"]} == {"insufficient_data"}
    default = client.get(f"{B}/regressions", params={**params, "verdict": [], "model_name": "m"})
    default = default.json()
    assert {r["metric"] for r in default["series"]} == {"latency_ms", "throughput_per_sec"}
    bad = client.get(f"{B}/regressions", params={"min_samples": 1})
    assert bad.status_code == 422


def test_regressions_of_one_run_series_match_the_whole_report(
    client: TestClient, planted: list[dict[str, Any]]
) -> None:
    params = {"days": 3, "baseline_days": 28, "min_samples": 3, "model_name": "m"}
    params["verdict"] = list(RANK)
    whole = client.get(f"{B}/regressions", params=params).json()["series"]
    for name in ("run_duration", "pass_rate"):
        one = client.get(f"{B}/regressions", params={**params, "metric": name})
        assert one.status_code == 200, one.text
        assert one.json()["series"] == [r for r in whole if r["metric"] == name] != []


RANK = {"regression": 0, "improvement": 1, "changed": 2, "unchanged": 3, "insufficient_data": 4}


@pytest.mark.parametrize("verdicts", [list(RANK), [], ["unchanged", "insufficient_data"]])
def test_regressions_pages_in_the_report_order(
    client: TestClient, planted: list[dict[str, Any]], verdicts: list[str]
) -> None:
    # min_samples 3 leaves series of every kind: moved (tested), under the threshold, too few.
    params = {"days": 3, "baseline_days": 28, "min_samples": 3, "verdict": verdicts}
    whole = client.get(f"{B}/regressions", params={**params, "limit": 1000})
    assert whole.status_code == 200, whole.text
    answer = whole.json()
    rows = answer["series"]
    wanted = set(verdicts or ["regression", "improvement", "changed", "insufficient_data"])
    assert rows and {r["verdict"] for r in rows} <= wanted
    assert int(whole.headers["x-total-count"]) == answer["series_total"] == len(rows)
    # verdict_counts counts every verdict, asked for or not, over all series.
    every = client.get(f"{B}/regressions", params={**params, "verdict": list(RANK), "limit": 1000})
    all_rows = every.json()["series"]
    assert answer["verdict_counts"] == {v: sum(r["verdict"] == v for r in all_rows) for v in RANK}
    assert [r for r in all_rows if r["verdict"] in wanted] == rows
    counts = answer["verdict_counts"]
    # Every kind is there: tested (regression), under the threshold, below the floor.
    assert counts["regression"] and counts["unchanged"] and counts["insufficient_data"], counts
    # The order: verdict rank, then the largest relative change (ties keep the key order).
    order = [(RANK[r["verdict"]], -abs(r["relative_change"] or 0.0)) for r in rows]
    assert order == sorted(order)
    for size in (1, 2, 3):
        paged: list[dict[str, Any]] = []
        for offset in range(0, len(rows) + size, size):
            page = client.get(
                f"{B}/regressions", params={**params, "limit": size, "offset": offset}
            )
            assert page.headers["x-total-count"] == str(len(rows))
            paged += page.json()["series"]
        assert paged == rows
    assert client.get(f"{B}/regressions", params={"limit": 0}).status_code == 422
    assert client.get(f"{B}/regressions", params={"limit": 1001}).status_code == 422


def test_compare_and_gate(client: TestClient, planted: list[dict[str, Any]]) -> None:
    base, head = f"r{RUNS - 3:02d}", f"r{RUNS - 1:02d}"
    response = client.get(
        f"{B}/compare", params={"base": base, "head": head, "fail_on": "new_failures"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_typed(CompareAnswer, answer)
    b = {c["name"]: c["status"] for c in planted[RUNS - 3]["results"]["test_details"]}
    h = {c["name"]: c["status"] for c in planted[RUNS - 1]["results"]["test_details"]}
    newly = sorted(n for n in h if h[n] == "failed" and b.get(n) not in (None, "failed"))
    still = sorted(n for n in h if h[n] == "failed" and b.get(n) == "failed")
    assert [t["test_id"] for t in answer["newly_failing"]] == newly
    assert [t["test_id"] for t in answer["still_failing"]] == still
    assert [t["test_id"] for t in answer["added"]] == sorted(set(h) - set(b))
    assert [t["test_id"] for t in answer["missing"]] == sorted(set(b) - set(h))
    assert answer["counts"]["newly_failing"] == len(newly) == 1
    assert answer["verdict"]["status"] == "fail"
    lat = next(m for m in answer["metrics"] if m["metric"] == "latency_ms")
    b_lat = planted[RUNS - 3]["results"]["performance_metrics"]["cpu"]["latency_ms"]
    h_lat = planted[RUNS - 1]["results"]["performance_metrics"]["cpu"]["latency_ms"]
    assert lat["delta"] == pytest.approx(h_lat - b_lat)
    # Same run twice: nothing changed, the gate passes.
    same = client.get(
        f"{B}/compare", params={"base": head, "head": head, "fail_on": "new_failures,missing"}
    ).json()
    assert same["verdict"] == {"status": "pass", "reasons": []}
    # A batch on one side; the retry batch against itself.
    batch = client.get(f"{B}/compare", params={"base": "retry-batch", "head": "retry3"}).json()
    assert batch["base"] == {"id": "retry-batch", "kind": "batch", "runs": 2}
    assert batch["verdict"] is None
    # An older run as base: latency got worse by ~50 %.
    old = client.get(
        f"{B}/compare", params={"base": "r00", "head": head, "fail_on": "regression:20%"}
    ).json()
    assert old["verdict"]["status"] == "fail"
    assert any("latency_ms" in r for r in old["verdict"]["reasons"])
    lenient = client.get(
        f"{B}/compare", params={"base": "r00", "head": head, "fail_on": "regression:80%"}
    ).json()
    assert lenient["verdict"]["status"] == "pass"
    assert client.get(f"{B}/compare", params={"base": "nope", "head": head}).status_code == 404
    bad = client.get(f"{B}/compare", params={"base": base, "head": head, "fail_on": "typo"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_fail_on"


def test_compare_says_when_a_metric_is_on_one_side_only(client: TestClient) -> None:
    def run(run_id: str, values: dict[str, float]) -> dict[str, Any]:
        points = [
            {"name": n, "value": v, "unit": "ms", "hardware": "cpu"} for n, v in values.items()
        ]
        return {"run_id": run_id, "model_name": "m1", "hardware": ["cpu"], "metrics": points}

    for doc in (
        run("b1", {"latency_ms": 10.0, "load_ms": 5.0}),
        run("h1", {"latency_ms": 10.0, "warmup_ms": 7.0}),
    ):
        assert client.post(f"{B}/runs", json=doc).status_code == 201
    answer = client.get(
        f"{B}/compare", params={"base": "b1", "head": "h1", "fail_on": "regression:0%"}
    ).json()
    by_name = {m["metric"]: m for m in answer["metrics"]}
    assert by_name["latency_ms"]["verdict"] == "unchanged"
    only_base, only_head = by_name["load_ms"], by_name["warmup_ms"]
    assert (only_base["base_n"], only_base["head_n"]) == (1, 0)
    assert (only_base["base_median"], only_base["head_median"]) == (5.0, None)
    assert (only_head["base_median"], only_head["head_median"]) == (None, 7.0)
    for row in (only_base, only_head):
        assert row["verdict"] == "one_side"
        assert row["delta"] is None and row["relative_change"] is None
    assert answer["verdict"] == {"status": "pass", "reasons": []}  # nothing to call worse


def test_gate_cli_exits_1_on_a_failing_verdict(
    client: TestClient, planted: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    base, head = f"r{RUNS - 3:02d}", f"r{RUNS - 1:02d}"
    code = cli_main(["gate", "--base", base, "--head", head, "--fail-on", "new_failures"], client)
    out = capsys.readouterr().out
    assert code == 1
    assert "newly_failing" in out and "FAIL" in out and "test_newfail" in out
    code = cli_main(["gate", "--base", head, "--head", head, "--fail-on", "new_failures"], client)
    assert code == 0 and "PASS" in capsys.readouterr().out
    code = cli_main(["gate", "--base", "nope", "--head", head, "--fail-on", "failures"], client)
    assert code == 2


def test_trends_per_day_and_downsampling(client: TestClient, planted: list[dict[str, Any]]) -> None:
    response = client.get(
        f"{B}/trends", params={"bucket": "day", "model_name": "m", "metric": "latency_ms"}
    )
    assert response.status_code == 200, response.text
    points = response.json()["points"]
    days: dict[str, list[dict[str, Any]]] = {}
    for d in planted:
        if d["model_name"] == "m":
            days.setdefault(d["started_at"][:10], []).append(d)
    assert [p["bucket"][:10] for p in points] == sorted(days)
    for p in points:
        docs = days[p["bucket"][:10]]
        outcomes = ["failed" for d in docs]  # every m run has a failing test (test_broken)
        assert p["runs"] == len(docs) and p["outcome_failed"] == len(outcomes)
        details = [c for d in docs for c in d["results"]["test_details"]]
        passed = sum(c["status"] == "passed" for c in details)
        failed = sum(c["status"] == "failed" for c in details)
        assert p["pass_rate"] == pytest.approx(passed / (passed + failed))
        lat = [d["results"]["performance_metrics"]["cpu"]["latency_ms"] for d in docs]
        assert p["metric_p50"] == pytest.approx(statistics.median(lat))
    capped = client.get(f"{B}/trends", params={"bucket": "hour", "days": 30, "points": 4}).json()
    assert len(capped["points"]) <= 4
    assert client.get(f"{B}/trends", params={"bucket": "month"}).status_code == 422


def test_batched_mann_whitney_equals_one_scipy_call_per_pair() -> None:
    """The report tests many series per scipy call; each p-value must equal scipy's own."""
    rng = random.Random(7)
    pairs: list[tuple[list[float], list[float]]] = []
    for _ in range(300):
        tied = rng.random() < 0.4  # ties make scipy's `auto` switch to the asymptotic method
        draw = (lambda: float(rng.randint(0, 5))) if tied else rng.random
        before = [draw() for _ in range(rng.randint(1, 14))]
        after = [draw() + 0.25 for _ in range(rng.randint(1, 14))]
        pairs.append((before, after))
    pairs += [([2.0, 2.0], [2.0]), ([], [1.0]), ([1.0], [])]
    got = mann_whitney_ps(pairs)
    for (before, after), p in zip(pairs, got, strict=True):
        if not before or not after:
            assert p is None
        elif len(set(before) | set(after)) == 1:
            assert p == 1.0
        else:
            assert p == float(mannwhitneyu(before, after, alternative="two-sided").pvalue)


def test_downsampling_a_million_points_keeps_extremes() -> None:
    rng = random.Random(3)
    rows = [{"i": i, "v": rng.random()} for i in range(1_000_000)]
    rows[123_456]["v"] = 5.0
    rows[654_321]["v"] = -5.0
    out = downsample(rows, 1000, "v")
    assert len(out) <= 1000
    assert [r["i"] for r in out] == sorted(r["i"] for r in out)
    assert {123_456, 654_321} <= {r["i"] for r in out}


def test_run_outcome_in_lists_details_batches_and_stats(client: TestClient) -> None:
    def doc(run_id: str, cases: list[str], status: str = "completed") -> dict[str, Any]:
        t = NOW - timedelta(hours=2)
        body: dict[str, Any] = {
            "run_id": run_id,
            "model_name": "o",
            "hardware": ["cpu"],
            "status": status,
            "started_at": iso(t),
            "batch_id": "ob",
            "results": {
                "test_details": [{"name": f"t{i}", "status": s} for i, s in enumerate(cases)]
            },
        }
        if status != "running":
            body["completed_at"] = iso(t + timedelta(seconds=3))
        return body

    planted = {
        "p": (["passed", "skipped"], "completed", "passed"),
        "f": (["passed", "error"], "completed", "failed"),
        "s": (["skipped", "xfailed"], "completed", "no_tests"),
        "e": ([], "completed", "no_tests"),
        "x": (["passed"], "error", "failed"),
        "live": (["passed"], "running", None),
    }
    for run_id, (cases, status, _) in planted.items():
        assert client.post(f"{B}/runs", json=doc(run_id, cases, status)).status_code == 201
    for run_id, (_, _, outcome) in planted.items():
        assert client.get(f"{B}/run/{run_id}").json()["outcome"] == outcome
    listed = {r["run_id"]: r["outcome"] for r in client.get(f"{B}/runs").json()}
    assert listed == {k: v[2] for k, v in planted.items()}
    for outcome in ("passed", "failed", "no_tests"):
        response = client.get(f"{B}/runs", params={"outcome": outcome})
        want = sorted(k for k, v in planted.items() if v[2] == outcome)
        assert sorted(r["run_id"] for r in response.json()) == want
        assert response.headers["x-total-count"] == str(len(want))
    assert client.get(f"{B}/runs", params={"outcome": "bogus"}).status_code == 422
    batch = client.get(f"{B}/batch/ob").json()
    assert batch["outcomes"] == {"passed": 1, "failed": 2, "no_tests": 2}
    assert {r["run_id"]: r["outcome"] for r in batch["runs"]}["f"] == "failed"
    stats = client.get(f"{B}/models/stats").json()[0]
    assert (stats["outcome_passed"], stats["outcome_failed"], stats["outcome_no_tests"]) == (
        1,
        2,
        2,
    )
    hw = client.get(f"{B}/hardware/stats").json()[0]
    assert hw["outcome_failed"] == 2


def test_flaky_last_runs_window(client: TestClient, planted: list[dict[str, Any]]) -> None:
    params = {"last_runs": 3, "min_runs": 3, "verdict": ["flaky", "broken", "healthy"]}
    rows = {r["test_id"]: r for r in client.get(f"{B}/flaky", params=params).json()}
    for name in ("test_flaky", "test_broken", "test_newfail"):
        series = decided_series(planted, "m", f"tests/test_m.py::{name}", 0.5)[-3:]
        row = rows[f"tests/test_m.py::{name}"]
        assert row["runs"] == 3
        assert row["failures"] == sum(s == "failed" for _, s in series)
        assert row["verdict"] == expected_verdict(series, 3, False)
    assert rows["tests/test_m.py::test_flaky"]["verdict"] == "healthy"
    assert rows["tests/test_m.py::test_broken"]["verdict"] == "broken"
    assert client.get(f"{B}/flaky", params={"last_runs": 1}).status_code == 422
    assert client.get(f"{B}/flaky", params={"max_failed_fraction": 1.5}).status_code == 422
    cuda = client.get(f"{B}/flaky", params={"hardware": "cuda", "verdict": "flaky"}).json()
    assert [r["test_id"] for r in cuda] == ["tests/test_r.py::test_retry"]


# --- trends per device -----------------------------------------------------------------------

TREND_FIELDS = (
    "runs",
    "outcome_passed",
    "outcome_failed",
    "outcome_no_tests",
    "tests_passed",
    "tests_failed",
)


def device_history() -> list[dict[str, Any]]:
    """Return model hw's runs over six days: cuda fails more and is faster than cpu."""
    base = (NOW - timedelta(days=6)).replace(hour=12, minute=0, second=0)
    docs: list[dict[str, Any]] = []

    def run(at: datetime, hardware: list[str], fails: int, seconds: float, metrics: list[Any]):
        cases = [
            {"name": f"tests/test_hw.py::test_{i}", "status": "failed" if i < fails else "passed"}
            for i in range(10)
        ]
        docs.append(
            {
                "run_id": f"hw{len(docs):02d}",
                "model_name": "hw",
                "hardware": hardware,
                "status": "completed",
                "started_at": iso(at),
                "completed_at": iso(at + timedelta(seconds=seconds)),
                "results": {"test_details": cases},
                "metrics": metrics,
            }
        )

    def lat(value: float, device: str | None) -> dict[str, Any]:
        return {"name": "latency_ms", "value": value, "unit": "ms", "hardware": device}

    for k in range(6):
        day = base + timedelta(days=k)
        run(day, ["cpu"], k % 2, 30 + k, [lat(20.0 + k, "cpu")])
        run(day + timedelta(minutes=5), ["cuda"], 3, 10 + k, [lat(5.0 + k / 2, "cuda")])
        if k % 2 == 0:  # a second cuda run, an hour later
            run(day + timedelta(hours=1), ["cuda"], 10 if k == 4 else 2, 14 + k, [lat(9.0, "cuda")])
        if k in (2, 4):  # on both devices: a point without a device, and one on cuda only
            run(
                day + timedelta(hours=2),
                ["cuda", "cpu"],
                0,
                50,
                [lat(50.0, None), lat(7.0, "cuda")],
            )
        if k == 3:  # a point on a device no run of this model ran on
            run(day + timedelta(hours=3), ["cpu"], 0, 40, [lat(70.0, "npu")])
    return docs


def bucket_of(t: datetime, bucket: str) -> datetime:
    t = t.astimezone(UTC).replace(tzinfo=None)
    if bucket == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if bucket == "day" else day - timedelta(days=day.weekday())


def answer_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def percentile_cont(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    pos = fraction * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def expected_trend(
    docs: list[dict[str, Any]], bucket: str, *, device: str | None, split: bool
) -> dict[tuple[str | None, datetime], dict[str, Any]]:
    """Compute /trends' points from the documents: per (device or None, bucket)."""
    acc: dict[tuple[str | None, datetime], dict[str, Any]] = {}

    def keys(devices: list[str]) -> list[str | None]:
        if split:
            return [d for d in devices if device in (None, d)]
        return [None] if device is None or device in devices else []

    def point(key: tuple[str | None, datetime]) -> dict[str, Any]:
        empty: dict[str, Any] = {name: 0 for name in TREND_FIELDS}
        return acc.setdefault(key, {**empty, "durations": [], "values": []})

    for doc in docs:
        started_at = datetime.fromisoformat(doc["started_at"])
        t = bucket_of(started_at, bucket)
        st = [c["status"] for c in doc["results"]["test_details"]]
        seconds = (datetime.fromisoformat(doc["completed_at"]) - started_at).total_seconds()
        outcome = "failed" if "failed" in st else "passed" if "passed" in st else "no_tests"
        for d in keys(doc["hardware"]):
            p = point((d, t))
            p["runs"] += 1
            p[f"outcome_{outcome}"] += 1
            p["tests_passed"] += st.count("passed")
            p["tests_failed"] += st.count("failed")
            p["durations"].append(seconds)
        for m in doc["metrics"]:
            for d in keys([m["hardware"]] if m["hardware"] else doc["hardware"]):
                point((d, t))["values"].append(m["value"])
    for p in acc.values():
        decided = p["tests_passed"] + p["tests_failed"]
        p["pass_rate"] = p["tests_passed"] / decided if decided else None
        durations, values = p.pop("durations"), p.pop("values")
        p["p50_duration"], p["p95_duration"] = (percentile_cont(durations, f) for f in (0.5, 0.95))
        p["metric_n"] = len(values) or None  # null in a bucket without points
        p["metric_p50"], p["metric_p95"] = (percentile_cont(values, f) for f in (0.5, 0.95))
    return acc


def assert_typed(model: type[BaseModel], body: dict[str, Any]) -> None:
    """Assert an answer round-trips through its declared model: nothing missing or extra."""
    assert model.model_validate(body).model_dump(mode="json") == body


def check_points(
    points: list[dict[str, Any]], want: dict[Any, dict[str, Any]], split: bool
) -> None:
    got_keys = [(p.get("hardware"), answer_time(p["bucket"])) for p in points]
    assert got_keys == sorted(want, key=lambda k: (k[0] or "", k[1]))
    for p, key in zip(points, got_keys, strict=True):
        assert ("hardware" in p) == split
        for name, value in want[key].items():
            assert p[name] == (value if value is None else pytest.approx(value)), (key, name)


@pytest.mark.parametrize("bucket", ["hour", "day", "week"])
def test_trends_one_series_per_device(client: TestClient, bucket: str) -> None:
    docs = device_history()
    for doc in docs:
        assert client.post(f"{B}/runs", json=doc).status_code == 201, doc
    params = {"model_name": "hw", "metric": "latency_ms", "bucket": bucket}
    split = client.get(f"{B}/trends", params={**params, "by": "hardware"})
    assert split.status_code == 200, split.text
    assert_typed(TrendsAnswer, split.json())
    want = expected_trend(docs, bucket, device=None, split=True)
    assert {k[0] for k in want} == {"cpu", "cuda", "npu"}
    check_points(split.json()["points"], want, split=True)
    # The two devices differ: cuda's pass rate and latency are lower every day.
    if bucket == "day":
        by = {(p["hardware"], p["bucket"]): p for p in split.json()["points"]}
        for (device, at), p in by.items():
            if device == "cuda" and ("cpu", at) in by:
                assert p["pass_rate"] < by[("cpu", at)]["pass_rate"]
    # Without `by`: one series, as before (a run and a point count once).
    merged = client.get(f"{B}/trends", params=params).json()
    assert_typed(TrendsAnswer, merged)
    assert set(merged) == {"bucket", "metric", "points"}
    check_points(merged["points"], expected_trend(docs, bucket, device=None, split=False), False)
    # The hardware filter, alone and with the split: the split's series of that device.
    for device in ("cuda", "cpu"):
        one = client.get(f"{B}/trends", params={**params, "hardware": device}).json()
        check_points(one["points"], expected_trend(docs, bucket, device=device, split=False), False)
        both = client.get(f"{B}/trends", params={**params, "hardware": device, "by": "hardware"})
        series = [p for p in split.json()["points"] if p["hardware"] == device]
        assert both.json()["points"] == series


def test_trends_points_cap_each_device_series(client: TestClient) -> None:
    docs = device_history()
    for doc in docs:
        assert client.post(f"{B}/runs", json=doc).status_code == 201
    params = {"model_name": "hw", "bucket": "hour", "by": "hardware"}
    whole = client.get(f"{B}/trends", params=params).json()["points"]
    capped = client.get(f"{B}/trends", params={**params, "points": 2}).json()["points"]
    for device in ("cpu", "cuda"):
        series = [p for p in whole if p["hardware"] == device]
        kept = [p for p in capped if p["hardware"] == device]
        assert len(series) > 2 and len(kept) == 2  # one chunk: its min and max pass rate
        rates = [p["pass_rate"] for p in series]
        assert sorted(p["pass_rate"] for p in kept) == [min(rates), max(rates)]
        assert kept == sorted(kept, key=lambda p: p["bucket"])
    assert client.get(f"{B}/trends", params={"by": "model"}).status_code == 422


# --- direction from units --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "unit", "better"),
    [
        # Anything per second, and the named rates: higher.
        *(
            (name, u, "higher")
            for name, u in [
                ("tokens_per_sec", "tokens/s"),
                ("x", "samples/s"),
                ("x", "it/s"),
                ("x", "items/s"),
                ("x", "req/sec"),
                ("x", "img/second"),
                ("render", "fps"),
                ("serve", "QPS"),
                ("latency_ms", "tokens/s"),
            ]
        ),
        # Decimal and binary sizes: lower.
        *(("peak", u, "lower") for u in ["B", "bytes", "KB", "kB", "MB", "GB", "TB"]),
        *(("peak", u, "lower") for u in ["KiB", "MiB", "GiB", "TiB"]),
        # Times: lower.
        *(("step", u, "lower") for u in ["ns", "us", "µs", "ms", "s", "sec", "seconds", "min"]),
        # A share: the name decides, lower words first.
        ("gpu_memory_pct", "%", "lower"),
        ("error_rate", "%", "lower"),
        ("loss", "ratio", "lower"),
        ("time_in_gc_pct", "%", "lower"),
        ("gpu_memory_util_pct", "%", "lower"),
        ("accuracy", "%", "higher"),
        ("pass_rate", "%", "higher"),
        ("gpu_util_pct", "%", "higher"),
        ("gpu_utilization", "%", "higher"),
        ("throughput_share", "ratio", "higher"),
        # A share the name says nothing of: a ratio is a pass rate, a % is unknown.
        ("pass_rate", "ratio", "higher"),
        ("cache_ratio", "ratio", "higher"),
        ("fan_pct", "%", None),
        ("occupancy", "%", None),
        # A unit that says nothing: the name, else unknown.
        ("latency", "", "lower"),
        ("accuracy", "", "higher"),
        ("widgets", "", None),
        ("widgets", "widgets", None),
    ],
)
def test_direction_by_unit_family(metric: str, unit: str, better: str | None) -> None:
    assert direction(metric, unit) == better
    moved = change_verdict(0.5, direction(metric, unit), 0.1)
    want = {"lower": "regression", "higher": "improvement", None: "changed"}[better]
    assert moved == want


# --- regressions: noise, unknown direction, pass rate ----------------------------------------

# Model n, one run a day as model m: a noisy metric whose median moves past 10 % by chance, a
# metric in a unit without a direction that shifts for real, and a pass rate that drops.
NOISY = [100, 60, 140, 80, 120, 70, 130, 90, 110, 65, 135, 150, 60, 115]
WIDGETS = [10.0 + (i % 3) / 10 if i < RUNS - 3 else 20.0 + (i % 3) / 10 for i in range(RUNS)]
PASSING = [10 if i < RUNS - 3 else 5 for i in range(RUNS)]  # of 10 tests


def noisy_history() -> list[dict[str, Any]]:
    docs = []
    for i in range(RUNS):
        t = started(i)
        cases = [
            {
                "name": f"tests/test_n.py::test_{k}",
                "status": "passed" if k < PASSING[i] else "failed",
            }
            for k in range(10)
        ]
        docs.append(
            {
                "run_id": f"n{i:02d}",
                "model_name": "n",
                "hardware": ["cpu"],
                "status": "completed",
                "started_at": iso(t),
                "completed_at": iso(t + timedelta(seconds=60)),
                "results": {"test_details": cases},
                "metrics": [
                    {"name": "noisy_ms", "value": NOISY[i], "unit": "ms", "hardware": "cpu"},
                    {"name": "widgets", "value": WIDGETS[i], "unit": "widgets", "hardware": "cpu"},
                ],
            }
        )
    return docs


def expected_regression(
    before: list[float], after: list[float], better: str | None, threshold: float, floor: int
) -> tuple[str, float | None]:
    """Return the verdict and p-value /regressions should give a series, computed here."""
    if len(before) < floor or len(after) < floor:
        return "insufficient_data", None
    rel = (statistics.median(after) - statistics.median(before)) / abs(statistics.median(before))
    if abs(rel) < threshold:
        return "unchanged", None
    p = float(mannwhitneyu(before, after, alternative="two-sided").pvalue)
    if p >= 0.05:
        return "unchanged", p
    if better is None:
        return "changed", p
    worse = rel > 0 if better == "lower" else rel < 0
    return ("regression" if worse else "improvement"), p


def test_regressions_noise_unknown_direction_and_pass_rate(client: TestClient) -> None:
    docs = noisy_history()
    for doc in docs:
        assert client.post(f"{B}/runs", json=doc).status_code == 201
    every = ["regression", "improvement", "changed", "unchanged", "insufficient_data"]
    params = {"model_name": "n", "days": 3, "baseline_days": 28, "min_samples": 3}
    answer = client.get(f"{B}/regressions", params={**params, "verdict": every}).json()
    assert_typed(RegressionsAnswer, answer)
    series = {r["metric"]: r for r in answer["series"]}
    split = NOW - timedelta(days=3)
    recent = [datetime.fromisoformat(d["started_at"]) >= split for d in docs]
    values = {
        "noisy_ms": ([float(v) for v in NOISY], "lower"),
        "widgets": (WIDGETS, None),
        "pass_rate": ([p / 10 for p in PASSING], "higher"),
    }
    planned = {"noisy_ms": "unchanged", "widgets": "changed", "pass_rate": "regression"}
    for name, (vals, better) in values.items():
        before = [v for v, r in zip(vals, recent, strict=True) if not r]
        after = [v for v, r in zip(vals, recent, strict=True) if r]
        verdict, p = expected_regression(before, after, better, 0.1, 3)
        assert verdict == planned[name], name  # the plant does what it is meant to
        row = series[name]
        assert row["better"] == better, name
        assert row["verdict"] == verdict, name
        assert row["p_value"] == pytest.approx(p), name
        rel = (statistics.median(after) - statistics.median(before)) / statistics.median(before)
        assert row["relative_change"] == pytest.approx(rel), name
    # The noise crossed the threshold and was tested, but is not significant.
    noisy = series["noisy_ms"]
    assert abs(noisy["relative_change"]) >= 0.1 and noisy["p_value"] >= 0.05
    # Six tests fail from the drop on: each passed throughout the baseline.
    dropped = sorted(f"tests/test_n.py::test_{k}" for k in range(10) if k >= min(PASSING))
    assert sorted(f["test_id"] for f in answer["newly_failing"]) == dropped


# --- compare: newly passing and added --------------------------------------------------------


def test_compare_lists_newly_passing_added_and_missing(
    client: TestClient, planted: list[dict[str, Any]]
) -> None:
    base, head = planted[2], planted[3]  # test_fixed passes from run 3; rare and five alternate
    answer = client.get(f"{B}/compare", params={"base": "r02", "head": "r03"}).json()
    assert_typed(CompareAnswer, answer)
    b = {c["name"]: c["status"] for c in base["results"]["test_details"]}
    h = {c["name"]: c["status"] for c in head["results"]["test_details"]}
    newly_passing = sorted(n for n in h if b.get(n) == "failed" and h[n] == "passed")
    added, missing = sorted(set(h) - set(b)), sorted(set(b) - set(h))
    assert newly_passing and added and missing
    assert [t["test_id"] for t in answer["newly_passing"]] == newly_passing
    assert [t["test_id"] for t in answer["added"]] == added
    assert [t["test_id"] for t in answer["missing"]] == missing
    assert all(t["base_status"] is None for t in answer["added"])
    assert [t["head_status"] for t in answer["added"]] == [h[n] for n in added]
    assert [(t["base_status"], t["head_status"]) for t in answer["newly_passing"]] == [
        ("failed", "passed")
    ] * len(newly_passing)
    counts = answer["counts"]
    assert (counts["newly_passing"], counts["added"], counts["missing"]) == (
        len(newly_passing),
        len(added),
        len(missing),
    )


# --- /tests filters and /tests/history -------------------------------------------------------


def expected_counts(docs: list[dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    """Return per test id (results, passed, failed) over the documents."""
    out: dict[str, list[int]] = {}
    for doc in docs:
        for c in doc["results"]["test_details"]:
            row = out.setdefault(c["name"], [0, 0, 0])
            row[0] += 1
            row[1] += c["status"] == "passed"
            row[2] += c["status"] == "failed"
    return {name: (r[0], r[1], r[2]) for name, r in out.items()}


def test_tests_filters_match_the_documents(
    client: TestClient, planted: list[dict[str, Any]]
) -> None:
    def at(doc: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(doc["started_at"])

    since, until = started(4), started(8)
    cases: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
        ({"batch_id": "retry-batch"}, [d for d in planted if d.get("batch_id") == "retry-batch"]),
        ({"tag": "commit:c5"}, [d for d in planted if d["tags"]["commit"] == "c5"]),
        ({"tag": "commit"}, planted),
        ({"tag": "nope"}, []),
        (
            {"since": iso(since), "until": iso(until)},
            [d for d in planted if since <= at(d) <= until],
        ),
        ({"hardware": "cuda"}, [d for d in planted if "cuda" in d["hardware"]]),
        ({"days": 2}, [d for d in planted if at(d) >= NOW - timedelta(days=2)]),
        (
            {"days": 2, "hardware": "cpu"},
            [d for d in planted if at(d) >= NOW - timedelta(days=2) and d["hardware"] == ["cpu"]],
        ),
    ]
    for params, docs in cases:
        response = client.get(f"{B}/tests", params={**params, "limit": 1000})
        assert response.status_code == 200, (params, response.text)
        got = {r["test_id"]: (r["runs"], r["passed"], r["failed"]) for r in response.json()}
        assert got == expected_counts(docs), params
        assert response.headers["x-total-count"] == str(len(got))


def test_history_filters_and_fields(client: TestClient, planted: list[dict[str, Any]]) -> None:
    fill = FILLERS[0]  # run by model m on cpu and model r on cuda
    for params in (
        {},
        {"model_name": "r"},
        {"hardware": "cuda"},
        {"model_name": "m", "hardware": "cpu"},
        {"model_name": "r", "hardware": "cpu"},
    ):
        rows = client.get(f"{B}/tests/history", params={"test_id": fill, **params}).json()
        docs = [
            d
            for d in planted
            if params.get("model_name") in (None, d["model_name"])
            and params.get("hardware") in (None, *d["hardware"])
        ]
        docs.sort(key=lambda d: (d["started_at"], d["run_id"]), reverse=True)
        assert [r["run_id"] for r in rows] == [d["run_id"] for d in docs], params
        for row, doc in zip(rows, docs, strict=True):
            case = next(c for c in doc["results"]["test_details"] if c["name"] == fill)
            assert row["batch_id"] == doc.get("batch_id")
            assert row["model_name"] == doc["model_name"]
            assert row["hardware"] == ",".join(doc["hardware"])
            assert row["status"] == case["status"]
            assert row["duration_ms"] == case.get("duration_ms")
            assert row["error"] == case.get("error")
    flaky = client.get(f"{B}/tests/history", params={"test_id": "tests/test_m.py::test_flaky"})
    rows = {r["run_id"]: r for r in flaky.json()}
    for doc in planted[:RUNS]:
        case = next(c for c in doc["results"]["test_details"] if c["name"].endswith("test_flaky"))
        row = rows[doc["run_id"]]
        assert (row["status"], row["duration_ms"], row["error"]) == (
            case["status"],
            case["duration_ms"],
            case.get("error"),
        )
    assert any(r["error"] for r in rows.values())


# --- /flaky?last_runs over the whole history -------------------------------------------------

OLD_FAILS = {1, 3, 4}  # of eight runs 45.5 to 38.5 days ago; then one passing run a day ago


def old_history() -> list[dict[str, Any]]:
    times = [NOW - timedelta(days=45 - k, hours=12) for k in range(8)] + [NOW - timedelta(days=1)]
    return [
        {
            "run_id": f"old{k}",
            "model_name": "old",
            "hardware": ["cpu"],
            "status": "completed",
            "started_at": iso(t),
            "completed_at": iso(t + timedelta(seconds=5)),
            "results": {
                "test_details": [
                    {
                        "name": "tests/test_old.py::test_x",
                        "status": "failed" if k in OLD_FAILS else "passed",
                    },
                    *({"name": n, "status": "passed"} for n in FILLERS[:2]),
                ]
            },
            "tags": {"commit": f"o{k}"},
        }
        for k, t in enumerate(times)
    ]


def test_flaky_last_runs_without_days_looks_at_the_whole_history(client: TestClient) -> None:
    docs = old_history()
    for doc in docs:
        assert client.post(f"{B}/runs", json=doc).status_code == 201
    test = "tests/test_old.py::test_x"
    everything = ["flaky", "broken", "healthy", "insufficient_data"]
    series = decided_series(docs, "old", test, 0.5)

    def row(**params: Any) -> dict[str, Any]:
        answer = client.get(f"{B}/flaky", params={"verdict": everything, "min_runs": 5, **params})
        assert answer.status_code == 200, answer.text
        return next(r for r in answer.json() if r["test_id"] == test)

    def check(got: dict[str, Any], used: list[tuple[datetime, str]]) -> None:
        assert got["runs"] == len(used)
        assert got["failures"] == sum(s == "failed" for _, s in used)
        assert got["verdict"] == expected_verdict(used, 5, False)

    # last_runs alone: each group's last 6 results, however old.
    check(row(last_runs=6), series[-6:])
    assert row(last_runs=6)["runs"] == 6
    # days alone, or by default (30): only the recent run.
    in_30 = [s for s in series if s[0] >= NOW - timedelta(days=30)]
    check(row(), in_30)
    check(row(days=30), in_30)
    # days and last_runs together: both.
    check(row(days=30, last_runs=6), in_30[-6:])
    in_42 = [s for s in series if s[0] >= NOW - timedelta(days=42)]
    check(row(days=42, last_runs=6), in_42[-6:])  # five results, one failure
