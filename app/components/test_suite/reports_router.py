"""HTTP routes of the Test Suite reports (/api/test/db): tests, history, flaky, regressions,
compare, trends. Parse → service → respond; every parameter is bounded."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from app.components.test_suite import reports, service
from app.components.test_suite.schemas import RunOutcome
from app.core.db import Database
from app.core.deps import ReadAccess, database_of
from app.core.pagination import MAX_OFFSET, Page
from app.core.responses import rows_response
from app.core.schemas import NOT_FOUND
from app.core.stats import window_start

router = APIRouter(prefix="/api/test/db", tags=["test-reports"], dependencies=[ReadAccess])

TestDb = Annotated[Database, Depends(database_of(service.COMPONENT))]
Short = Annotated[str, Field(min_length=1, max_length=256)]
TestId = Annotated[str, Field(min_length=1, max_length=1024)]
Verdict = Literal["flaky", "broken", "healthy", "insufficient_data"]
RegressionVerdict = Literal[
    "regression", "improvement", "changed", "unchanged", "insufficient_data"
]
Better = Literal["lower", "higher"]
FLAKY_DAYS = 30  # /flaky's window unless `days` or `last_runs` is sent


class Paged(BaseModel):
    """Paging fields (as app.core.pagination) inside a filter that refuses unknown parameters."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=1000, description="rows per page (1-1000)")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description=f"rows to skip (0-{MAX_OFFSET})")

    def page(self) -> Page:
        """Return the page asked for."""
        return Page(limit=self.limit, offset=self.offset)


class ReportFilter(BaseModel):
    """Which runs a report looks at (unknown parameters are refused)."""

    model_config = ConfigDict(extra="forbid")

    model_name: Short | None = None
    hardware: Short | None = Field(None, description="a device: the case's, else its run's")
    days: int | None = Field(None, ge=1, le=3650, description="the last N days (1-3650)")
    since: datetime | None = None
    until: datetime | None = None
    batch_id: Short | None = None
    tag: Annotated[str, Field(min_length=1, max_length=1281)] | None = Field(
        None, description="name:value (or name)"
    )
    outcome: list[RunOutcome] = Field(default_factory=list, max_length=3)

    def scope(self, q: str | None = None) -> reports.ReportScope:
        """Return the store's scope for this filter."""
        since = self.since
        start = window_start(self.days)
        if start is not None and (since is None or start > since):
            since = start
        return reports.ReportScope(
            model_name=self.model_name,
            hardware=self.hardware,
            since=since,
            until=self.until,
            batch_id=self.batch_id,
            tag=self.tag,
            outcome=[o.value for o in self.outcome],
            q=q,
        )


class CasesFilter(ReportFilter, Paged):
    """GET /tests: a report filter plus a test-id substring."""

    q: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        None, description="substring of the test id (case-insensitive)"
    )


class HistoryFilter(Paged):
    """GET /tests/history: one test id, optionally one model and device."""

    test_id: TestId
    model_name: Short | None = None
    hardware: Short | None = None
    days: int | None = Field(None, ge=1, le=3650)


class FlakyFilter(Paged):
    """GET /flaky: the window, the floor and the outage exclusion."""

    model_name: Short | None = None
    hardware: Short | None = None
    days: int | None = Field(
        None,
        ge=1,
        le=3650,
        description="the last N days (1-3650; default 30, or all time with last_runs)",
    )
    last_runs: int | None = Field(
        None,
        ge=2,
        le=10_000,
        description="only each test's last N decided results (2-10000), within days if sent",
    )

    def window_days(self) -> int | None:
        """Return the days looked at: as sent, else 30, else all time with `last_runs`."""
        if self.days is None and self.last_runs is None:
            return FLAKY_DAYS
        return self.days

    min_runs: int = Field(
        5, ge=1, le=10_000, description="below this many results: insufficient_data (1-10000)"
    )
    max_failed_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="runs where more than this share of tests failed are outages, left out",
    )
    verdict: list[Verdict] = Field(
        default_factory=list, max_length=4, description="default flaky and broken"
    )


class RegressionFilter(Paged):
    """GET /regressions: recent window against the baseline before it; the series are paged."""

    days: int = Field(7, ge=1, le=365, description="recent window in days (1-365, default 7)")
    baseline_days: int = Field(28, ge=1, le=3650, description="baseline before it (default 28)")
    model_name: Short | None = None
    hardware: Short | None = None
    metric: Short | None = Field(None, description="a metric name, run_duration or pass_rate")
    min_samples: int = Field(5, ge=2, le=10_000, description="runs per window (2-10000)")
    threshold: float = Field(0.1, gt=0.0, le=100.0, description="relative change (0.1 = 10%)")
    verdict: list[RegressionVerdict] = Field(
        default_factory=list, max_length=5, description="default: all but unchanged"
    )


class CompareFilter(BaseModel):
    """GET /compare: two run or batch ids and an optional gate."""

    model_config = ConfigDict(extra="forbid")

    base: Annotated[str, Field(min_length=1, max_length=64)]
    head: Annotated[str, Field(min_length=1, max_length=64)]
    fail_on: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        None, description="new_failures,failures,missing,regression:5%"
    )
    threshold: float = Field(
        0.05, gt=0.0, le=100.0, description="metric change called a regression (0.05 = 5%)"
    )


class TrendFilter(ReportFilter):
    """GET /trends: a report filter, the bucket, a metric and a point cap."""

    bucket: Literal["hour", "day", "week"] = "day"
    days: int | None = Field(30, ge=1, le=3650, description="the last N days (default 30)")
    metric: Short | None = None
    points: int = Field(
        1000, ge=2, le=10_000, description="at most this many points per series (2-10000)"
    )
    by: Literal["hardware"] | None = Field(
        None, description="hardware: one series per device (each point has `hardware`)"
    )


class CaseSummaryRow(BaseModel):
    """One test id summarised over the runs in scope."""

    test_id: str
    runs: int
    passed: int
    failed: int
    skipped: int
    pass_rate: float | None
    p50_duration_ms: float | None
    p95_duration_ms: float | None
    first_seen: datetime
    last_seen: datetime
    last_status: str
    last_failure_at: datetime | None
    last_failure_message: str | None
    flips: int


class HistoryRow(BaseModel):
    """One result of a test."""

    run_id: str
    batch_id: str | None
    model_name: str
    hardware: str | None
    at: datetime
    status: str
    duration_ms: float | None
    error: str | None


class FlakyRow(BaseModel):
    """One (model, test, device) judged over its decided results."""

    model_name: str
    test_id: str
    hardware: str | None
    runs: int
    failures: int
    failure_rate: float | None
    failure_rate_low: float | None = Field(None, description="Wilson 95 % interval")
    failure_rate_high: float | None
    flips: int
    retry_passes: int = Field(description="batches or commits where it both failed and passed")
    last_status: str
    first_at: datetime
    last_at: datetime
    last_failure_at: datetime | None
    last_failure_message: str | None
    verdict: Verdict


class RegressionSeries(BaseModel):
    """One (model, device, metric, unit) series: baseline against recent, with its verdict."""

    model_name: str
    hardware: str | None
    metric: str
    unit: str
    baseline_n: int
    recent_n: int
    baseline_median: float | None
    recent_median: float | None
    relative_change: float | None
    better: Better | None = Field(description="which way is better, from the unit (or name)")
    p_value: float | None = Field(description="two-sided Mann–Whitney U, for moved series")
    change_run_id: str | None
    change_at: datetime | None
    verdict: RegressionVerdict


class NewlyFailing(BaseModel):
    """A test that passed throughout the baseline and whose latest recent result failed."""

    model_name: str
    test_id: str
    hardware: str | None
    baseline_passed: int
    recent_failed: int
    first_failure_at: datetime | None
    last_failure_message: str | None


class RegressionsAnswer(BaseModel):
    """GET /regressions: a page of series, the counts per verdict, newly failing tests."""

    baseline_start: datetime
    recent_start: datetime
    generated_at: datetime
    series_total: int
    verdict_counts: dict[RegressionVerdict, int]
    series: list[RegressionSeries]
    newly_failing: list[NewlyFailing]


class CompareSide(BaseModel):
    """One side of a comparison: the id asked, run or batch, and its number of runs."""

    id: str
    kind: Literal["run", "batch"]
    runs: int


class ComparedTest(BaseModel):
    """A (model, test id) and its state on each side (null where absent)."""

    model_name: str
    test_id: str
    base_status: Literal["failed", "passed", "skipped"] | None
    head_status: Literal["failed", "passed", "skipped"] | None


class MetricDelta(BaseModel):
    """Per (model, device, metric, unit) each side's median and the change."""

    model_name: str
    hardware: str | None
    metric: str
    unit: str
    base_n: int
    head_n: int
    base_median: float | None
    head_median: float | None
    delta: float | None
    relative_change: float | None
    better: Better | None
    verdict: Literal["regression", "improvement", "changed", "unchanged"]


class GateVerdict(BaseModel):
    """The `fail_on` verdict."""

    status: Literal["pass", "fail"]
    reasons: list[str]


class CompareAnswer(BaseModel):
    """GET /compare: tests per category, metric deltas and the gate's verdict."""

    base: CompareSide
    head: CompareSide
    counts: dict[str, int]
    newly_failing: list[ComparedTest]
    newly_passing: list[ComparedTest]
    still_failing: list[ComparedTest]
    added: list[ComparedTest]
    missing: list[ComparedTest]
    truncated: bool
    metrics: list[MetricDelta]
    fail_on: str | None
    verdict: GateVerdict | None


class TrendPoint(BaseModel):
    """One time bucket of the runs (and metric points) in scope."""

    model_config = ConfigDict(extra="forbid")

    bucket: datetime
    runs: int
    outcome_passed: int
    outcome_failed: int
    outcome_no_tests: int
    tests_passed: int
    tests_failed: int
    pass_rate: float | None
    p50_duration: float | None
    p95_duration: float | None
    metric_n: int | None
    metric_p50: float | None
    metric_p95: float | None


class DeviceTrendPoint(TrendPoint):
    """One time bucket of one device's series (`by=hardware`)."""

    hardware: str


class TrendsAnswer(BaseModel):
    """GET /trends: the bucket, the metric and the points (with `hardware` under `by`)."""

    bucket: Literal["hour", "day", "week"]
    metric: str | None
    points: list[DeviceTrendPoint | TrendPoint]


@router.get("/tests", response_model=list[CaseSummaryRow])
def list_tests(db: TestDb, f: Annotated[CasesFilter, Query()]) -> Response:
    """List test ids with counts, pass rate, durations, last failure and flips."""
    with db.reading() as session:
        rows, total = reports.tests(session, f.scope(f.q), f.page())
    return rows_response(rows, total=total)


@router.get("/tests/history", response_model=list[HistoryRow])
def test_history(db: TestDb, f: Annotated[HistoryFilter, Query()]) -> Response:
    """List one test's results over time, newest first."""
    scope = reports.ReportScope(
        model_name=f.model_name, hardware=f.hardware, since=window_start(f.days)
    )
    with db.reading() as session:
        rows, total = reports.history_of(session, f.test_id, scope, f.page())
    return rows_response(rows, total=total)


@router.get("/flaky", response_model=list[FlakyRow])
def flaky(db: TestDb, f: Annotated[FlakyFilter, Query()]) -> Response:
    """List flaky and broken tests per (model, test, device), most hurtful first."""
    scope = reports.ReportScope(
        model_name=f.model_name, hardware=f.hardware, since=window_start(f.window_days())
    )
    with db.reading() as session:
        rows, total = service.flaky_report(
            session,
            scope,
            min_runs=f.min_runs,
            max_failed_fraction=f.max_failed_fraction,
            last_runs=f.last_runs,
            verdicts_wanted=f.verdict,
            page=f.page(),
        )
    return rows_response(rows, total=total)


@router.get("/regressions", response_model=RegressionsAnswer)
def regressions(db: TestDb, f: Annotated[RegressionFilter, Query()]) -> Response:
    """Compare recent runs with the baseline per series (a page of them; X-Total-Count and
    `series_total` count the series of the verdicts asked, `verdict_counts` every verdict);
    list newly failing tests."""
    scope = reports.ReportScope(model_name=f.model_name, hardware=f.hardware)
    with db.reading() as session:
        answer = service.regressions_report(
            session,
            scope,
            days=f.days,
            baseline_days=f.baseline_days,
            metric=f.metric,
            min_samples=f.min_samples,
            threshold=f.threshold,
            verdicts_wanted=f.verdict,
            page=f.page(),
        )
    return rows_response(answer, total=answer["series_total"])


@router.get("/compare", response_model=CompareAnswer, responses=NOT_FOUND)
def compare(db: TestDb, f: Annotated[CompareFilter, Query()]) -> Response:
    """Compare two runs or batches test by test and per metric; `fail_on` adds a verdict."""
    with db.reading() as session:
        answer: dict[str, Any] = service.compare_report(
            session, f.base, f.head, f.fail_on, f.threshold
        )
    return rows_response(answer)


@router.get("/trends", response_model=TrendsAnswer)
def trends(db: TestDb, f: Annotated[TrendFilter, Query()]) -> Response:
    """Return per time bucket pass rate, runs by outcome, run duration and metric p50/p95."""
    with db.reading() as session:
        rows = service.trends_report(
            session, f.scope(), f.bucket, f.metric, f.points, by_device=f.by == "hardware"
        )
    return rows_response({"bucket": f.bucket, "metric": f.metric, "points": rows})
