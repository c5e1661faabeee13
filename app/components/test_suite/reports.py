"""Test Suite report queries (history, flaky, regressions, compare, trends): SQL only.

Every aggregate runs in the database; Python receives one row per test, group or bucket.
Portable SQLAlchemy Core (window functions, FILTER, WITHIN GROUP); the one DuckDB-only
aggregate (`arg_max`) comes from app.core.bulk with its PostgreSQL form.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Double,
    String,
    and_,
    any_,
    bindparam,
    case,
    cast,
    desc,
    exists,
    func,
    literal,
    literal_column,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import CTE, BindParameter, Select, Subquery

from app.components.test_suite.models import (
    Run,
    RunBatchLink,
    RunCase,
    RunMetric,
    RunResult,
    RunTag,
)
from app.components.test_suite.schemas import FAILED, PASSED, SKIPPED
from app.components.test_suite.store import outcome_of
from app.core.bulk import arg_max, key_hash
from app.core.pagination import Page
from app.core.records import rows_of
from app.core.stats import count_where, escape_like, percentile

# A run's place in time: when it started, else when it was recorded.
AT = func.coalesce(Run.started_at, Run.created_at)
# A case's device: its own, else its run's devices joined by commas.
DEVICE = func.coalesce(RunCase.hardware, func.array_to_string(Run.hardware, ","))
IS_FAIL = RunCase.status.in_(FAILED)
IS_PASS = RunCase.status.in_(PASSED)
DECIDED = RunCase.status.in_([*PASSED, *FAILED])
# The tag whose equal values mark re-runs of the same code (pass-on-retry).
COMMIT_TAG = "commit"


@dataclass(frozen=True)
class ReportScope:
    """Which runs a report looks at."""

    model_name: str | None = None
    hardware: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    batch_id: str | None = None
    tag: str | None = None
    outcome: Sequence[str] = ()
    q: str | None = None


def _run_conditions(scope: ReportScope) -> list[Any]:
    conds: list[Any] = []
    if scope.model_name:
        conds.append(Run.model_name == scope.model_name)
    if scope.since is not None:
        conds.append(scope.since <= AT)
    if scope.until is not None:
        conds.append(scope.until >= AT)
    if scope.batch_id:
        members = select(RunBatchLink.run_id).where(RunBatchLink.batch_id == scope.batch_id)
        conds.append(Run.run_id.in_(members))
    if scope.tag:
        name, sep, value = scope.tag.partition(":")
        tag_cond = [RunTag.run_id == Run.run_id, RunTag.tag_name == name]
        if sep:
            tag_cond.append(RunTag.tag_value == value)
        conds.append(exists().where(*tag_cond))
    if scope.outcome:
        found = (
            select(Run.run_id.label("rid"))
            .outerjoin(RunResult, RunResult.run_id == Run.run_id)
            .where(outcome_of().in_(list(scope.outcome)))
        )
        conds.append(Run.run_id.in_(found))
    return conds


def _case_conditions(scope: ReportScope) -> list[Any]:
    conds = _run_conditions(scope)
    if scope.hardware:
        conds.append(scope.hardware == DEVICE)
    if scope.q:
        conds.append(RunCase.name.ilike(escape_like(scope.q), escape="\\"))
    return conds


def _ratio(num: Any, den: Any) -> Any:
    return cast(num, Double) / func.nullif(den, 0)


# --- per-test history ------------------------------------------------------------------------


def tests(session: Session, scope: ReportScope, page: Page) -> tuple[list[dict[str, Any]], int]:
    """Return one row per test id (counts, pass rate, durations, last status, flips)."""
    conds = _case_conditions(scope)
    fail = case((IS_FAIL, 1), else_=0)
    decided = (
        select(
            RunCase.name.label("name"),
            fail.label("fail"),
            func.lag(fail).over(partition_by=RunCase.name, order_by=(AT, Run.run_id)).label("prev"),
        )
        .join(Run, Run.run_id == RunCase.run_id)
        .where(*conds, DECIDED)
        .subquery("decided")
    )
    flips = (
        select(
            decided.c.name,
            count_where(
                and_(decided.c.prev.is_not(None), decided.c.prev != decided.c.fail), "flips"
            ),
        )
        .group_by(decided.c.name)
        .subquery("flips")
    )
    passed = func.count().filter(IS_PASS)
    failed = func.count().filter(IS_FAIL)
    grouped = (
        select(
            RunCase.name.label("test_id"),
            func.count().label("runs"),
            passed.label("passed"),
            failed.label("failed"),
            func.count().filter(RunCase.status.in_(SKIPPED)).label("skipped"),
            _ratio(passed, passed + failed).label("pass_rate"),
            percentile(RunCase.duration_ms, "0.5").label("p50_duration_ms"),
            percentile(RunCase.duration_ms, "0.95").label("p95_duration_ms"),
            func.min(AT).label("first_seen"),
            func.max(AT).label("last_seen"),
            arg_max(RunCase.status, AT).label("last_status"),
            func.max(AT).filter(IS_FAIL).label("last_failure_at"),
            arg_max(RunCase.error, AT, IS_FAIL).label("last_failure_message"),
        )
        .join(Run, Run.run_id == RunCase.run_id)
        .where(*conds)
        .group_by(RunCase.name)
        .subquery("grouped")
    )
    # The number of test ids rides along as a window over the grouped rows (one pass, not a
    # second count(DISTINCT) over the cases); only a page past the end needs the count alone.
    query = (
        select(
            grouped,
            func.coalesce(flips.c.flips, 0).label("flips"),
            func.count().over().label("total_ids"),
        )
        .outerjoin(flips, flips.c.name == grouped.c.test_id)
        .order_by(
            desc(grouped.c.last_status.in_(FAILED)), desc(grouped.c.failed), grouped.c.test_id
        )
        .limit(page.limit)
        .offset(page.offset)
    )
    rows = rows_of(session, query)
    if rows:
        total = rows[0]["total_ids"]
        for row in rows:
            del row["total_ids"]
    else:
        total = session.scalar(
            select(func.count(func.distinct(RunCase.name)))
            .join(Run, Run.run_id == RunCase.run_id)
            .where(*conds)
        )
    return rows, int(total or 0)


def history_of(
    session: Session, test_id: str, scope: ReportScope, page: Page
) -> tuple[list[dict[str, Any]], int]:
    """Return one test's results over time, newest first, and their number."""
    conds = [RunCase.name == test_id, *_case_conditions(scope)]
    batch = (
        select(func.min(RunBatchLink.batch_id))
        .where(RunBatchLink.run_id == Run.run_id)
        .scalar_subquery()
    )
    query = (
        select(
            Run.run_id,
            batch.label("batch_id"),
            Run.model_name,
            DEVICE.label("hardware"),
            AT.label("at"),
            RunCase.status,
            RunCase.duration_ms,
            RunCase.error,
        )
        .join(Run, Run.run_id == RunCase.run_id)
        .where(*conds)
        .order_by(desc(AT), desc(Run.run_id), desc(RunCase.position))
        .limit(page.limit)
        .offset(page.offset)
    )
    total = session.scalar(
        select(func.count())
        .select_from(RunCase)
        .join(Run, Run.run_id == RunCase.run_id)
        .where(*conds)
    )
    return rows_of(session, query), int(total or 0)


# --- flaky tests -----------------------------------------------------------------------------

# Newly failing tests leave out outage runs too (more than half of the tests failed).
OUTAGE_FRACTION = 0.5


def _outage(max_failed_fraction: float) -> Any:
    # True for runs (joined with their results row) where too large a share of tests failed.
    return and_(
        RunResult.run_id.is_not(None),
        cast(RunResult.tests_failed, Double)
        > literal(max_failed_fraction, Double) * (RunResult.tests_passed + RunResult.tests_failed),
    )


def _without_outages(scope: ReportScope, max_failed_fraction: float) -> Any:
    """Return the condition: the case's run is in scope and not an outage (see `_outage`).

    A semi-join on run ids: the results row is joined to the runs alone, not to every case
    (that join cost a quarter of the flaky report).
    """
    ok_runs = (
        select(Run.run_id)
        .outerjoin(RunResult, RunResult.run_id == Run.run_id)
        .where(*_run_conditions(scope), ~_outage(max_failed_fraction))
    )
    return RunCase.run_id.in_(ok_runs)


def _not_outage(max_failed_fraction: float) -> Any:
    """Return the condition: the case's run is not an outage, as an anti-join.

    For newly failing tests: an anti-join with the outage runs' results rows (24 of 100,000 at
    the bench scale) instead of `_without_outages`' semi-join with every other run, whose hash
    table cost ~15 ms of that ~105 ms statement (single-threaded). Exact: `run_id` is unique
    in the results and the counts are NOT NULL, so "no outage row" is "a non-outage row or
    none"; the caller's conditions keep the run in scope. (The flaky report keeps the
    semi-join: there the anti-join measured no faster.)
    """
    return ~exists().where(RunResult.run_id == RunCase.run_id, _outage(max_failed_fraction))


# Which way a flaky group hurts most: flaky and broken first (each failure a red CI job).
FLAKY_RANK = {"flaky": 0, "broken": 1, "insufficient_data": 2, "healthy": 3}


def _flaky_verdict(g: Subquery, min_runs: int) -> Any:
    """Return flaky | broken | healthy | insufficient_data for one group's decided results.

    Below `min_runs` it is never healthy. A test that failed and passed on the same code
    (retry) or flipped twice or more is flaky; one that fails now after at most one flip
    (always failing, or failing since one change) is broken; otherwise healthy (failed, then
    fixed once and passing since).
    """
    return case(
        (g.c.runs < min_runs, literal("insufficient_data")),
        (func.coalesce(g.c.failures, 0) == 0, literal("healthy")),
        ((g.c.retry_passes > 0) | (g.c.flips >= 2), literal("flaky")),
        (g.c.last_failed == 1, literal("broken")),
        else_=literal("healthy"),
    )


def flaky_groups(
    session: Session,
    scope: ReportScope,
    *,
    max_failed_fraction: float,
    last_runs: int | None,
    min_runs: int,
    verdicts: Sequence[str],
    page: Page,
) -> tuple[list[dict[str, Any]], int]:
    """Return a page of (model, test, device) groups of the given verdicts, and their number.

    Each group: runs used, failures, flips, last result, times, retry passes and `verdict`;
    most hurtful first (verdict, failures, flips, then the key). Runs where more than
    `max_failed_fraction` of the decided tests failed are left out (an outage, not
    flakiness); skipped results are not runs of the test. Judged, ordered and paged in SQL.
    """
    # Without healthy or insufficient_data asked, groups that never failed can be dropped early.
    only_failing = not set(verdicts) & {"healthy", "insufficient_data"}
    # A CTE: read three times (flips, batch retries, commit retries), computed once.
    u = _flaky_results(scope, max_failed_fraction, last_runs, only_failing).cte("used")
    groups = _flaky_aggregates(u, only_failing)
    retries = _retry_passes(u)
    joined = (
        select(groups, func.coalesce(retries.c.retry_passes, 0).label("retry_passes"))
        .outerjoin(
            retries,
            and_(
                retries.c.model_name == groups.c.model_name,
                retries.c.test_id == groups.c.test_id,
                retries.c.hardware == groups.c.hardware,
            ),
        )
        .subquery("joined")
    )
    verdict = _flaky_verdict(joined, min_runs)
    judged = select(joined, verdict.label("verdict")).subquery("judged")
    rank = case(*((judged.c.verdict == v, r) for v, r in FLAKY_RANK.items()))
    query = (
        select(judged, func.count().over().label("total_groups"))
        .where(judged.c.verdict.in_(list(verdicts)))
        .order_by(
            rank,
            desc(func.coalesce(judged.c.failures, 0)),
            desc(judged.c.flips),
            judged.c.model_name,
            judged.c.test_id,
            func.coalesce(judged.c.hardware, ""),
        )
        .limit(page.limit)
        .offset(page.offset)
    )
    rows = rows_of(session, query)
    if rows or page.offset == 0:
        total = int(rows[0]["total_groups"]) if rows else 0
    else:  # a page past the end: count alone
        total = int(
            session.scalar(
                select(func.count()).select_from(judged).where(judged.c.verdict.in_(list(verdicts)))
            )
            or 0
        )
    for row in rows:
        del row["total_groups"]
    return rows, total


def _flaky_results(
    scope: ReportScope, max_failed_fraction: float, last_runs: int | None, only_failing: bool
) -> Select[Any]:
    """Select the decided results flakiness is judged on (the last `last_runs` per group).

    With `only_failing`, groups without a failure in the window are dropped first (a hashed
    semi-join, a superset of the exact one: the caller's HAVING keeps exactly the failing
    groups), so the window and the retry joins see only the rows that can matter.
    """
    fail = case((IS_FAIL, 1), else_=0)
    columns: list[Any] = [
        Run.model_name.label("model_name"),
        RunCase.name.label("test_id"),
        DEVICE.label("hardware"),
        Run.run_id.label("run_id"),
        AT.label("at"),
        fail.label("fail"),
        RunCase.error.label("error"),
    ]
    if last_runs:
        key = (Run.model_name, RunCase.name, DEVICE)
        order: list[Any] = [desc(AT), desc(Run.run_id)]
        columns.append(func.row_number().over(partition_by=key, order_by=order).label("rn"))
    no_outage = _without_outages(scope, max_failed_fraction)
    conds = [*_case_conditions(scope), DECIDED, no_outage]
    if only_failing:
        group = key_hash(Run.model_name, RunCase.name, DEVICE)
        failing = (
            select(group)
            .select_from(RunCase)
            .join(Run, Run.run_id == RunCase.run_id)
            .where(*_case_conditions(scope), IS_FAIL, no_outage)
        )
        conds.append(group.in_(failing))
    rows = select(*columns).join(Run, Run.run_id == RunCase.run_id).where(*conds)
    if last_runs:
        inner = rows.subquery("ranked")
        kept: list[Any] = [inner.c[c.name] for c in columns[:-1]]
        rows = select(*kept).where(inner.c.rn <= last_runs)
    return rows


def _flaky_aggregates(u: CTE, only_failing: bool) -> Subquery:
    """Aggregate the used results per group: runs, failures, flips, last result and times."""
    gkey = (u.c.model_name, u.c.test_id, u.c.hardware)
    ordered = select(
        u,
        func.lag(u.c.fail).over(partition_by=gkey, order_by=(u.c.at, u.c.run_id)).label("prev"),
    ).subquery("ordered")
    okey = (ordered.c.model_name, ordered.c.test_id, ordered.c.hardware)
    agg = select(
        *okey,
        func.count().label("runs"),
        func.sum(ordered.c.fail).label("failures"),
        count_where(and_(ordered.c.prev.is_not(None), ordered.c.prev != ordered.c.fail), "flips"),
        arg_max(ordered.c.fail, ordered.c.at).label("last_failed"),
        func.min(ordered.c.at).label("first_at"),
        func.max(ordered.c.at).label("last_at"),
        func.max(ordered.c.at).filter(ordered.c.fail == 1).label("last_failure_at"),
        arg_max(ordered.c.error, ordered.c.at, ordered.c.fail == 1).label("last_failure_message"),
    ).group_by(*okey)
    if only_failing:
        agg = agg.having(func.sum(ordered.c.fail) > 0)
    return agg.subquery("groups")


def _retry_passes(u: CTE) -> Subquery:
    """Count per group the attempts (same batch, or same commit tag) that failed and passed."""
    gkey = (u.c.model_name, u.c.test_id, u.c.hardware)
    by_batch = select(
        *gkey, u.c.fail, literal_column("'b:'").concat(RunBatchLink.batch_id).label("attempt")
    ).join(RunBatchLink, RunBatchLink.run_id == u.c.run_id)
    by_commit = select(
        *gkey, u.c.fail, literal_column("'c:'").concat(RunTag.tag_value).label("attempt")
    ).join(RunTag, and_(RunTag.run_id == u.c.run_id, RunTag.tag_name == COMMIT_TAG))
    attempts = union_all(by_batch, by_commit).subquery("attempts")
    akey = (attempts.c.model_name, attempts.c.test_id, attempts.c.hardware)
    mixed = (
        select(*akey, attempts.c.attempt)
        .group_by(*akey, attempts.c.attempt)
        .having(
            and_(func.max(attempts.c.fail) == 1, func.min(attempts.c.fail) == 0),
        )
        .subquery("mixed")
    )
    mkey = (mixed.c.model_name, mixed.c.test_id, mixed.c.hardware)
    return select(*mkey, func.count().label("retry_passes")).group_by(*mkey).subquery("retries")


# --- regressions -----------------------------------------------------------------------------

RUN_DURATION = ("run_duration", "s")
PASS_RATE = ("pass_rate", "ratio")


SeriesKey = tuple[str, str, str, str]  # (model, device, metric, unit)


def _only(
    keys: Sequence[SeriesKey] | None, columns: Sequence[Any], kind: tuple[str, str] | None = None
) -> list[Any]:
    """Return the conditions that keep a source's rows of `keys` (none without keys).

    The metrics source matches its (model, device, metric, unit) `columns` against every key;
    a run source, of one `kind` (metric, unit), its (model, device) against the keys of that
    kind (none: an always-false IN, which the planner drops with its source). The keys' models
    also filter the runs before any join.
    """
    if keys is None:
        return []
    if kind is None:
        wanted = [tuple(k) for k in keys]
    else:
        wanted = [(m, d) for m, d, name, unit in keys if (name, unit) == kind]
    return [Run.model_name.in_(sorted({w[0] for w in wanted})), tuple_(*columns).in_(wanted)]


def _run_columns(kind: tuple[str, str], value: Any) -> list[Any]:
    """Return a run source's series columns, labelled: the union takes its first source's
    names, and with `metric=run_duration` or `pass_rate` a run source is the first."""
    return [
        Run.model_name.label("model_name"),
        func.array_to_string(Run.hardware, ",").label("hardware"),
        literal(kind[0]).label("metric"),
        literal(kind[1]).label("unit"),
        Run.run_id.label("run_id"),
        AT.label("at"),
        value.label("value"),
    ]


def _series(
    scope: ReportScope,
    metric: str | None,
    since: datetime,
    keys: Sequence[SeriesKey] | None = None,
) -> Any:
    """Return one value per (run, model, device, metric, unit) since a time, as a subquery.

    With `keys`, only those series: each source filtered on its own keys, below its per-run
    aggregation. (A tuple IN on the union was pushed into every source as a mark join over
    all 100,000 runs, before the models' filter: ~40 % of the moved-series statement.)
    """
    run_conds = [*_run_conditions(scope), since <= AT]
    device = func.coalesce(RunMetric.hardware, func.array_to_string(Run.hardware, ","))
    run_device = func.array_to_string(Run.hardware, ",")
    sources = []
    if metric not in (RUN_DURATION[0], PASS_RATE[0]):
        key = (Run.model_name, device, RunMetric.metric_name, RunMetric.metric_unit)
        conds = [*run_conds, *_only(keys, key)]
        if metric:
            conds.append(RunMetric.metric_name == metric)
        if scope.hardware:
            conds.append(device == scope.hardware)
        sources.append(
            select(
                Run.model_name.label("model_name"),
                device.label("hardware"),
                RunMetric.metric_name.label("metric"),
                RunMetric.metric_unit.label("unit"),
                Run.run_id.label("run_id"),
                func.min(AT).label("at"),
                func.avg(RunMetric.metric_value).label("value"),
            )
            .join(Run, Run.run_id == RunMetric.run_id)
            .where(*conds)
            .group_by(*key, Run.run_id)
        )
    device_conds = [literal(scope.hardware) == any_(Run.hardware)] if scope.hardware else []
    run_key = (Run.model_name, run_device)
    if metric in (None, RUN_DURATION[0]):
        sources.append(
            select(*_run_columns(RUN_DURATION, cast(Run.duration, Double))).where(
                *run_conds,
                *device_conds,
                *_only(keys, run_key, RUN_DURATION),
                Run.status == "completed",
                Run.duration.is_not(None),
            )
        )
    if metric in (None, PASS_RATE[0]):
        decided = RunResult.tests_passed + RunResult.tests_failed
        sources.append(
            select(*_run_columns(PASS_RATE, _ratio(RunResult.tests_passed, decided)))
            .join(RunResult, RunResult.run_id == Run.run_id)
            .where(*run_conds, *device_conds, *_only(keys, run_key, PASS_RATE), decided > 0)
        )
    return union_all(*sources).subquery("series")


# How a window row is judged before any per-run statistics: too few samples, a change under
# the threshold, or a move past it (only these need the series and the significance test).
FEW, FLAT, MOVED = "few", "flat", "moved"


# The SQL types of a window row's columns (for the typed NULLs of the per-kind count rows).
WINDOW_TYPES: dict[str, Any] = {
    **dict.fromkeys(("model_name", "hardware", "metric", "unit"), String),
    **dict.fromkeys(("baseline_n", "recent_n"), BigInteger),
    **dict.fromkeys(("baseline_median", "recent_median", "rel"), Double),
}


@dataclass(frozen=True)
class Windows:
    """The window rows a regressions page needs (see `regression_windows`)."""

    moved: list[dict[str, Any]]  # every group that moved past the threshold
    kind_counts: dict[str, int]  # groups per kind (few, flat, moved)
    rest: list[dict[str, Any]]  # the page's candidates of the other kinds, with `rest_pos`


@dataclass(frozen=True)
class WindowSpec:
    """The two windows a regressions report compares, and its floors."""

    metric: str | None  # one metric, or every metric plus run duration and pass rate
    baseline_start: datetime
    split: datetime  # the recent window starts here
    min_samples: int
    threshold: float


def _judged_windows(scope: ReportScope, spec: WindowSpec) -> CTE:
    """Return per group the window samples and medians, the relative change and its kind."""
    s = _series(scope, spec.metric, spec.baseline_start)
    key = (s.c.model_name, s.c.hardware, s.c.metric, s.c.unit)
    base = s.c.at < spec.split
    w = (
        select(
            *key,
            count_where(base, "baseline_n"),
            count_where(~base, "recent_n"),
            percentile(s.c.value, "0.5").filter(base).label("baseline_median"),
            percentile(s.c.value, "0.5").filter(~base).label("recent_median"),
        )
        .group_by(*key)
        .subquery("windows")
    )
    rel = case(
        (w.c.baseline_median == 0, None),
        else_=(w.c.recent_median - w.c.baseline_median) / func.abs(w.c.baseline_median),
    )
    few = (w.c.baseline_n < spec.min_samples) | (w.c.recent_n < spec.min_samples)
    kind = case(
        (few, literal(FEW)),
        (func.coalesce(func.abs(rel), 0) < spec.threshold, literal(FLAT)),
        else_=literal(MOVED),
    )
    return select(w, rel.label("rel"), kind.label("kind")).cte("judged")


def _rest_order(t: Any) -> tuple[Any, ...]:
    """Return the report's order of the series not tested: flat first, the largest change first."""
    size = func.abs(func.coalesce(t.c.rel, 0))
    return (desc(t.c.kind == FLAT), desc(size), t.c.model_name, t.c.hardware, t.c.metric, t.c.unit)


def regression_windows(
    session: Session,
    scope: ReportScope,
    spec: WindowSpec,
    *,
    rest_kinds: Sequence[str],
    offset: int,
    limit: int,
) -> Windows:
    """Return the window rows (samples and medians per model, device, metric, unit) Python needs.

    Each group is classified in SQL (`kind`: few, flat or moved) and counted per kind. Every
    moved row comes back; of the rows of `rest_kinds`, ranked as the report sorts them (flat
    before few, the largest relative change first, then the key), only those the page
    `offset`/`limit` can show after at most every moved row: rest positions
    (offset − moved, offset + limit]. They are found by a top-N with a constant bound
    (ORDER BY … LIMIT offset + limit), not a sort of every group: a LIMIT or OFFSET that
    depends on the number of moved rows made DuckDB sort all 68,656 rest rows (~16 ms of
    ~190 ms single-threaded at the bench scale). One statement: the judged groups are
    computed once (a CTE).
    """
    c = _judged_windows(scope, spec)
    group_cols = [col for col in c.c if col.name != "kind"]
    no_pos = cast(None, BigInteger)
    n_moved = select(func.count()).where(c.c.kind == MOVED).scalar_subquery()
    top = (
        select(c)
        .where(c.c.kind.in_(list(rest_kinds)))
        .order_by(*_rest_order(c))
        .limit(offset + limit)
        .subquery("top_rest")
    )
    ranked = select(
        top, func.row_number().over(order_by=_rest_order(top)).label("rest_pos")
    ).subquery("ranked")
    page = select(ranked).where(ranked.c.rest_pos > literal(offset) - n_moved).subquery("page")
    query = union_all(
        select(*group_cols, c.c.kind, no_pos.label("kind_n"), no_pos.label("rest_pos")).where(
            c.c.kind == MOVED
        ),
        select(
            *(cast(None, WINDOW_TYPES[col.name]) for col in group_cols),
            c.c.kind,
            cast(func.count(), BigInteger),
            no_pos,
        ).group_by(c.c.kind),
        select(*(page.c[col.name] for col in group_cols), page.c.kind, no_pos, page.c.rest_pos),
    )
    moved: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    rest: list[dict[str, Any]] = []
    for row in rows_of(session, query):
        if row["kind_n"] is not None:
            counts[row["kind"]] = int(row["kind_n"])
        elif row["rest_pos"] is not None:
            rest.append(row)
        else:
            moved.append(row)
    moved.sort(key=lambda r: (r["model_name"], r["hardware"], r["metric"], r["unit"]))
    return Windows(moved, counts, rest)


def regression_series(
    session: Session,
    scope: ReportScope,
    metric: str | None,
    baseline_start: datetime,
    groups: Sequence[SeriesKey],
) -> list[dict[str, Any]]:
    """Return the per-run values of the given groups, in time order."""
    if not groups:
        return []
    s = _series(scope, metric, baseline_start, groups)
    key = (s.c.model_name, s.c.hardware, s.c.metric, s.c.unit)
    query = select(*key, s.c.run_id, s.c.at, s.c.value).order_by(*key, s.c.at, s.c.run_id)
    return rows_of(session, query)


def newly_failing(
    session: Session, scope: ReportScope, baseline_start: datetime, split: datetime, limit: int
) -> list[dict[str, Any]]:
    """Return tests that passed throughout the baseline and whose latest recent result failed."""
    conds = [
        *_case_conditions(scope),
        baseline_start <= AT,
        DECIDED,
        _not_outage(OUTAGE_FRACTION),
    ]
    # Only tests that failed in the recent window can be newly failing: a semi-join first.
    # Hashed (a superset of the tuple IN; the HAVING below needs a recent failure anyway).
    group = key_hash(Run.model_name, RunCase.name, DEVICE)
    recent_fail = (
        select(group)
        .select_from(RunCase)
        .join(Run, Run.run_id == RunCase.run_id)
        .where(*_case_conditions(scope), split <= AT, IS_FAIL)
    )
    conds.append(group.in_(recent_fail))
    base = split > AT
    fail = case((IS_FAIL, 1), else_=0)
    key = (Run.model_name, RunCase.name, DEVICE)
    query = (
        select(
            Run.model_name.label("model_name"),
            RunCase.name.label("test_id"),
            DEVICE.label("hardware"),
            count_where(and_(base, IS_PASS), "baseline_passed"),
            count_where(and_(~base, IS_FAIL), "recent_failed"),
            func.min(AT).filter(and_(~base, IS_FAIL)).label("first_failure_at"),
            arg_max(RunCase.error, AT, and_(~base, IS_FAIL)).label("last_failure_message"),
        )
        .join(Run, Run.run_id == RunCase.run_id)
        .where(*conds)
        .group_by(*key)
        .having(
            and_(
                func.count().filter(and_(base, IS_PASS)) > 0,
                func.count().filter(and_(base, IS_FAIL)) == 0,
                arg_max(fail, AT, ~base) == 1,
            )
        )
        .order_by(Run.model_name, RunCase.name, DEVICE)
        .limit(limit)
    )
    return rows_of(session, query)


# --- compare ---------------------------------------------------------------------------------

# A test's state on one side: failed if any of its results failed, else passed, else skipped.
STATE = case((IS_FAIL, 3), (IS_PASS, 2), else_=1)
STATE_NAMES = {3: "failed", 2: "passed", 1: "skipped"}


# The compare statements are built once with expanding parameters (each side's run ids, both
# sides', the limit): building the expression was ~1.5 ms of a ~15 ms compare (cProfile),
# and the compiled form is cached by SQLAlchemy either way.
BASE_IDS: BindParameter[list[str]] = bindparam("base_ids", expanding=True)
HEAD_IDS: BindParameter[list[str]] = bindparam("head_ids", expanding=True)
BOTH_IDS: BindParameter[list[str]] = bindparam("both_ids", expanding=True)


def _compare_params(base: Sequence[str], head: Sequence[str]) -> dict[str, Any]:
    return {"base_ids": list(base), "head_ids": list(head), "both_ids": sorted({*base, *head})}


def _both_sides(child_run_id: Any) -> list[Any]:
    """Return the filter to the two sides' runs, on the child table and on `test_runs` too.

    DuckDB does not carry an IN list across the join's equality: without the second filter it
    builds its hash table on every run (100,000 at the bench scale) to probe a few rows.
    """
    return [child_run_id.in_(BOTH_IDS), Run.run_id.in_(BOTH_IDS)]


def _compare_states() -> Any:
    base_state = func.max(STATE).filter(RunCase.run_id.in_(BASE_IDS))
    head_state = func.max(STATE).filter(RunCase.run_id.in_(HEAD_IDS))
    states = (
        select(
            Run.model_name.label("model_name"),
            RunCase.name.label("test_id"),
            base_state.label("base_state"),
            head_state.label("head_state"),
        )
        .join(Run, Run.run_id == RunCase.run_id)
        .where(*_both_sides(RunCase.run_id))
        .group_by(Run.model_name, RunCase.name)
        .subquery("states")
    )
    b, h = states.c.base_state, states.c.head_state
    category = case(
        (b.is_(None), "added"),
        (h.is_(None), "missing"),
        (and_(h == 3, b == 3), "still_failing"),
        (h == 3, "newly_failing"),
        (and_(b == 3, h == 2), "newly_passing"),
        else_="unchanged",
    )
    return select(states, category.label("category")).subquery("compared")


@functools.cache
def _compare_tests_query() -> Select[Any]:
    c = _compare_states()
    changed = c.c.category != "unchanged"
    order = (c.c.category, c.c.model_name, c.c.test_id)
    ranked = select(
        c,
        func.count().over(partition_by=c.c.category).label("category_n"),
        func.row_number().over(partition_by=c.c.category).label("category_pos"),
        func.row_number().over(partition_by=changed, order_by=order).label("pos"),
    ).subquery("ranked")
    return (
        select(ranked)
        .where(
            (ranked.c.category_pos == 1)
            | ((ranked.c.category != "unchanged") & (ranked.c.pos <= bindparam("limit")))
        )
        .order_by(ranked.c.category, ranked.c.model_name, ranked.c.test_id)
    )


def compare_tests(
    session: Session, base: Sequence[str], head: Sequence[str], limit: int
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Return how many tests fall in each category, and the tests that changed (or were added
    or are missing), at most `limit`: one pass over both sides' results."""
    params = {**_compare_params(base, head), "limit": limit}
    counts: dict[str, int] = {}
    tests: list[dict[str, Any]] = []
    for row in rows_of(session, _compare_tests_query(), params):
        if row["category_pos"] == 1:
            counts[row["category"]] = int(row["category_n"])
        if row["category"] != "unchanged" and row["pos"] <= limit:
            tests.append(
                {
                    "category": row["category"],
                    "model_name": row["model_name"],
                    "test_id": row["test_id"],
                    "base_status": STATE_NAMES.get(row["base_state"]),
                    "head_status": STATE_NAMES.get(row["head_state"]),
                }
            )
    return counts, tests


@functools.cache
def _compare_metrics_query() -> Select[Any]:
    device = func.coalesce(RunMetric.hardware, func.array_to_string(Run.hardware, ","))
    in_base = RunMetric.run_id.in_(BASE_IDS)
    in_head = RunMetric.run_id.in_(HEAD_IDS)
    key = (Run.model_name, device, RunMetric.metric_name, RunMetric.metric_unit)
    return (
        select(
            Run.model_name.label("model_name"),
            device.label("hardware"),
            RunMetric.metric_name.label("metric"),
            RunMetric.metric_unit.label("unit"),
            count_where(in_base, "base_n"),
            count_where(in_head, "head_n"),
            percentile(RunMetric.metric_value, "0.5").filter(in_base).label("base_median"),
            percentile(RunMetric.metric_value, "0.5").filter(in_head).label("head_median"),
        )
        .join(Run, Run.run_id == RunMetric.run_id)
        .where(*_both_sides(RunMetric.run_id))
        .group_by(*key)
        .order_by(*key)
    )


def compare_metrics(
    session: Session, base: Sequence[str], head: Sequence[str]
) -> list[dict[str, Any]]:
    """Return per (model, device, metric, unit) the median of each side's points."""
    return rows_of(session, _compare_metrics_query(), _compare_params(base, head))


# --- trends ----------------------------------------------------------------------------------


def _devices_of_runs(conds: list[Any]) -> Subquery:
    """Return (run_id, device) for each device of each run meeting `conds`.

    The runs are filtered first, then their devices unnested: DuckDB does not push a filter
    below a lateral unnest join (see store.hardware_stats).
    """
    return (
        select(Run.run_id.label("run_id"), func.unnest(Run.hardware).label("device"))
        .where(*conds)
        .subquery("run_devices")
    )


def run_trend(
    session: Session, scope: ReportScope, bucket: str, by_device: bool = False
) -> list[dict[str, Any]]:
    """Return per time bucket (and device): runs by outcome, tests passed/failed, duration p50/p95.

    With `by_device` a run counts once for each of its devices (as /hardware/stats), and each
    row has its `hardware`.
    """
    start = func.date_trunc(literal_column(f"'{_unit(bucket)}'"), AT)
    conds = _run_conditions(scope)
    if scope.hardware:
        conds.append(literal(scope.hardware) == any_(Run.hardware))
    keys: list[Any] = [start]
    query = select().select_from(Run)
    device: list[Any] = []
    if by_device:
        devices = _devices_of_runs(conds)
        keys = [devices.c.device, start]
        device = [devices.c.device.label("hardware")]
        conds = [devices.c.device == scope.hardware] if scope.hardware else []
        query = select().select_from(devices).join(Run, Run.run_id == devices.c.run_id)
    outcome = outcome_of()
    completed = Run.status == "completed"
    query = (
        query.add_columns(
            *device,
            start.label("bucket"),
            func.count().label("runs"),
            count_where(outcome == "passed", "outcome_passed"),
            count_where(outcome == "failed", "outcome_failed"),
            count_where(outcome == "no_tests", "outcome_no_tests"),
            func.coalesce(func.sum(RunResult.tests_passed), 0).label("tests_passed"),
            func.coalesce(func.sum(RunResult.tests_failed), 0).label("tests_failed"),
            percentile(Run.duration, "0.5").filter(completed).label("p50_duration"),
            percentile(Run.duration, "0.95").filter(completed).label("p95_duration"),
        )
        .outerjoin(RunResult, RunResult.run_id == Run.run_id)
        .where(*conds)
        .group_by(*keys)
        .order_by(*keys)
    )
    return rows_of(session, query)


def _metric_points(scope: ReportScope, metric: str) -> Subquery:
    """Return (device, at, value) per point of one metric: a point's device is its own
    hardware, else each of its run's devices (a point counts once for each)."""
    conds = [*_run_conditions(scope), RunMetric.metric_name == metric]
    own_conds: list[Any] = [RunMetric.hardware.is_not(None)]
    run_conds: list[Any] = [RunMetric.hardware.is_(None)]
    if scope.hardware:  # below the unnest too (see `_devices_of_runs`)
        own_conds.append(RunMetric.hardware == scope.hardware)
        run_conds.append(literal(scope.hardware) == any_(Run.hardware))
    own = (
        select(RunMetric.hardware.label("device"), AT.label("at"), RunMetric.metric_value)
        .join(Run, Run.run_id == RunMetric.run_id)
        .where(*conds, *own_conds)
    )
    runs = (
        select(func.unnest(Run.hardware).label("device"), AT, RunMetric.metric_value)
        .join(Run, Run.run_id == RunMetric.run_id)
        .where(*conds, *run_conds)
    )
    return union_all(own, runs).subquery("metric_points")


def metric_trend(
    session: Session, scope: ReportScope, bucket: str, metric: str, by_device: bool = False
) -> list[dict[str, Any]]:
    """Return per time bucket (and device, with `by_device`) the p50/p95 of one metric's points.

    A point's device is its own hardware, else each of its run's devices.
    """
    if not by_device and not scope.hardware:
        # Without a device, a point counts once (not once per device of its run).
        return _metric_trend_all(session, scope, bucket, metric)
    points = _metric_points(scope, metric)
    start = func.date_trunc(literal_column(f"'{_unit(bucket)}'"), points.c.at)
    keys: list[Any] = [points.c.device, start] if by_device else [start]
    conds = [points.c.device == scope.hardware] if scope.hardware else []
    query = (
        select(
            *([points.c.device.label("hardware")] if by_device else []),
            start.label("bucket"),
            func.count().label("metric_n"),
            percentile(points.c.metric_value, "0.5").label("metric_p50"),
            percentile(points.c.metric_value, "0.95").label("metric_p95"),
        )
        .where(*conds)
        .group_by(*keys)
        .order_by(*keys)
    )
    return rows_of(session, query)


def _metric_trend_all(
    session: Session, scope: ReportScope, bucket: str, metric: str
) -> list[dict[str, Any]]:
    """Return per time bucket the p50/p95 of one metric's points, on every device."""
    start = func.date_trunc(literal_column(f"'{_unit(bucket)}'"), AT)
    query = (
        select(
            start.label("bucket"),
            func.count().label("metric_n"),
            percentile(RunMetric.metric_value, "0.5").label("metric_p50"),
            percentile(RunMetric.metric_value, "0.95").label("metric_p95"),
        )
        .join(Run, Run.run_id == RunMetric.run_id)
        .where(*_run_conditions(scope), RunMetric.metric_name == metric)
        .group_by(start)
        .order_by(start)
    )
    return rows_of(session, query)


BUCKETS = ("hour", "day", "week")


def _unit(bucket: str) -> str:
    # Only the known names reach the SQL text (they are not bound: date_trunc wants a literal).
    if bucket not in BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}")
    return bucket
