"""Cross-component answers, built only from each component's service and store functions."""

from __future__ import annotations

from typing import Any

from app.components.generator import store as gen_store
from app.components.test_suite import reports as ts_reports
from app.components.test_suite import service as ts_service
from app.components.test_suite import store as ts_store
from app.core.db import Database
from app.core.errors import NotFound
from app.core.models import utcnow
from app.core.pagination import Page
from app.core.stats import window_start

TEST_SUITE = "test_suite"
GENERATOR = "generator"
FLAKY_DAYS = 30
"""The flaky count of a model looks at its last 30 days (the flaky report's default)."""


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _test_totals(db: Database, model_name: str | None) -> dict[str, Any]:
    with db.reading() as session:
        totals = ts_store.totals(session, model_name)
    completed = totals["by_status"].get("completed", 0)
    passed, failed = totals["by_outcome"]["passed"], totals["by_outcome"]["failed"]
    totals["success_rate"] = _rate(completed, totals["total"])
    totals["pass_rate"] = _rate(passed, passed + failed)
    return totals


def _generator_totals(db: Database, model_name: str | None) -> dict[str, Any]:
    with db.reading() as session:
        totals = gen_store.totals(session, model_name)
    totals["success_rate"] = _rate(totals["by_status"].get("completed", 0), totals["total"])
    return totals


def overview(dbs: dict[str, Database]) -> dict[str, Any]:
    """Return each enabled component's counts (by status, outcome), models, devices, activity."""
    answer: dict[str, Any] = {"components": sorted(dbs)}
    if TEST_SUITE in dbs:
        answer[TEST_SUITE] = {"runs": _test_totals(dbs[TEST_SUITE], None)}
    if GENERATOR in dbs:
        answer[GENERATOR] = {"tasks": _generator_totals(dbs[GENERATOR], None)}
    answer["generated_at"] = utcnow()
    return answer


def _test_model(db: Database, model_name: str, recent: int) -> dict[str, Any]:
    runs = _test_totals(db, model_name)
    scope = ts_reports.ReportScope(model_name=model_name)
    with db.reading() as session:
        recent_runs, _ = ts_store.list_runs(
            session, ts_store.RunFilter(model_name=model_name), Page(recent, 0)
        )
        report = ts_service.regressions_report(
            session,
            scope,
            days=7,
            baseline_days=28,
            metric=None,
            min_samples=5,
            threshold=0.1,
            verdicts_wanted=("regression",),
            page=Page(recent, 0),
        )
        _, flaky_count = ts_service.flaky_report(
            session,
            ts_reports.ReportScope(model_name=model_name, since=window_start(FLAKY_DAYS)),
            min_runs=5,
            max_failed_fraction=0.5,
            last_runs=None,
            verdicts_wanted=("flaky",),
            page=Page(1, 0),
        )
    return {
        "runs": runs,
        "recent_runs": recent_runs,
        "regressions": report["series"],
        "regression_count": report["series_total"],
        "flaky_count": flaky_count,
    }


def _generator_model(db: Database, model_name: str, recent: int) -> dict[str, Any]:
    tasks = _generator_totals(db, model_name)
    with db.reading() as session:
        recent_tasks, _ = gen_store.list_tasks(
            session, gen_store.TaskFilter(model_name=model_name), Page(recent, 0)
        )
    return {"tasks": tasks, "recent_tasks": recent_tasks}


def model(dbs: dict[str, Database], model_name: str, recent: int) -> dict[str, Any]:
    """Return one model's runs and tasks: whole-history counts and rates, recent rows, verdicts."""
    answer: dict[str, Any] = {"model_name": model_name}
    known = False
    if TEST_SUITE in dbs:
        answer[TEST_SUITE] = _test_model(dbs[TEST_SUITE], model_name, recent)
        known = known or answer[TEST_SUITE]["runs"]["total"] > 0
    if GENERATOR in dbs:
        answer[GENERATOR] = _generator_model(dbs[GENERATOR], model_name, recent)
        known = known or answer[GENERATOR]["tasks"]["total"] > 0
    if not known:
        raise NotFound(f"no test run or generator task of model {model_name!r}")
    answer["generated_at"] = utcnow()
    return answer


def search(dbs: dict[str, Database], query: str, limit: int) -> dict[str, Any]:
    """Return each enabled component's search results (up to `limit` each), labelled by it."""
    results: dict[str, list[dict[str, Any]]] = {}
    if TEST_SUITE in dbs:
        with dbs[TEST_SUITE].reading() as session:
            results[TEST_SUITE] = ts_store.search_runs(session, query, limit)
    if GENERATOR in dbs:
        with dbs[GENERATOR].reading() as session:
            results[GENERATOR] = gen_store.search_tasks(session, query, limit)
    counts = {name: len(rows) for name, rows in results.items()}
    return {
        "query": query,
        "limit": limit,
        "results": results,
        "counts": {**counts, "total": sum(counts.values())},
        "generated_at": utcnow(),
    }
