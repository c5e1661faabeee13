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
from scipy.stats import mannwhitneyu

from app.__main__ import main as cli_main
from app.components.test_suite.verdicts import mann_whitney_ps
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
