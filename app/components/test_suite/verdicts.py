"""Report verdicts and statistics on aggregated rows: no SQL, no HTTP.

Flaky: Wilson intervals (the verdict is judged in SQL by reports.flaky_groups). Regressions:
direction by unit, Mann–Whitney U (scipy) and a single change point. Compare: `fail_on`
rules. Trends: min/max preserving downsampling.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.core.errors import BadRequest

# --- flaky -----------------------------------------------------------------------------------

Z95 = 1.959963984540054


def wilson(failures: int, runs: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Return the Wilson score interval (95 % by default) of a failure rate."""
    if runs <= 0:
        return None, None
    p = failures / runs
    denom = 1 + z * z / runs
    centre = (p + z * z / (2 * runs)) / denom
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def flaky_rows(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add the failure rate, its Wilson interval and the last status to each judged group."""
    out = []
    for g in groups:
        runs, failures = int(g["runs"]), int(g["failures"] or 0)
        low, high = wilson(failures, runs)
        out.append(
            {
                **{k: v for k, v in g.items() if k != "last_failed"},
                "failures": failures,
                "last_status": "failed" if g["last_failed"] else "passed",
                "failure_rate": failures / runs if runs else None,
                "failure_rate_low": low,
                "failure_rate_high": high,
            }
        )
    return out


# --- regressions -----------------------------------------------------------------------------

ALPHA = 0.05

# Units, compared case-insensitively: sizes (decimal and binary bytes) and times are better
# lower; rates (anything per second, fps, qps) are better higher.
SIZE_UNITS = frozenset(
    {"b", "byte", "bytes", "kb", "mb", "gb", "tb", "pb", "kib", "mib", "gib", "tib", "pib"}
)
TIME_UNITS = frozenset(
    {"ns", "us", "µs", "μs", "ms", "s", "sec", "secs", "second", "seconds", "min", "h", "hr"}
)
RATE_UNITS = frozenset({"fps", "qps", "rps", "tps", "hz"})
RATE_SUFFIXES = ("/s", "/sec", "/second")
SHARE_UNITS = frozenset({"%", "ratio"})  # direction from the metric's name
# Words of a metric's name (prefixes of its `_`/`-`/`.`-separated words) saying which way is
# better; the lower words are looked for first (`gpu_memory_util_pct` is memory).
LOWER_WORDS = ("memory", "mem", "latency", "time", "duration", "error", "loss")
HIGHER_WORDS = ("accuracy", "acc", "pass", "throughput", "util", "success", "hit")
_WORD = re.compile(r"[a-z0-9]+")


def _direction_by_name(metric: str) -> str | None:
    words = _WORD.findall(metric.lower())
    for better, stems in (("lower", LOWER_WORDS), ("higher", HIGHER_WORDS)):
        if any(w == s or (len(s) > 3 and w.startswith(s)) for w in words for s in stems):
            return better
    return None


def direction(metric: str, unit: str) -> str | None:
    """Return `lower` or `higher` (which way is better) from the unit, or None if unknown.

    Rates are better higher; sizes and times lower; for `%` and `ratio` the metric's name
    decides (memory, latency, time, duration, error, loss: lower; accuracy, pass, throughput,
    util, success, hit: higher), else a `ratio` is a pass rate (higher) and a `%` is unknown.
    A unit that says nothing lets the name decide the same way.
    """
    u = unit.strip().lower()
    if u in RATE_UNITS or u.endswith(RATE_SUFFIXES):
        return "higher"
    if u in SIZE_UNITS or u in TIME_UNITS:
        return "lower"
    by_name = _direction_by_name(metric)
    if u in SHARE_UNITS:
        return by_name or ("higher" if u == "ratio" else None)
    return by_name


def relative_change(before: float | None, after: float | None) -> float | None:
    """Return (after - before) / |before|, or None when undefined."""
    if before is None or after is None or before == 0:
        return None
    return (after - before) / abs(before)


def change_verdict(rel: float | None, better: str | None, threshold: float) -> str:
    """Return regression | improvement | changed | unchanged for a relative change."""
    if rel is None or abs(rel) < threshold:
        return "unchanged"
    if better is None:
        return "changed"
    worse = rel > 0 if better == "lower" else rel < 0
    return "regression" if worse else "improvement"


def _mwu_method(before: Sequence[float], after: Sequence[float]) -> str:
    """Return the method scipy's `auto` picks for this one pair: exact unless large or tied."""
    values = [*before, *after]
    if (len(before) > 8 and len(after) > 8) or len(set(values)) < len(values):
        return "asymptotic"
    return "exact"


def mann_whitney_ps(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
) -> list[float | None]:
    """Return the two-sided Mann–Whitney U p-value of each (before, after) pair (None if empty).

    One scipy call per (sizes, method) shape over a 2-D array, not one per pair (scipy's
    per-call overhead is ~1.5 ms). The method is chosen per pair as scipy's `auto` would for
    that pair alone (scipy would look at the ties of the whole array), so each p-value equals
    `mannwhitneyu(before, after)`.
    """
    out: list[float | None] = [None] * len(pairs)
    shapes: dict[tuple[int, int, str], list[int]] = {}
    for i, (before, after) in enumerate(pairs):
        if not before or not after:
            continue
        if len(set(before) | set(after)) == 1:
            out[i] = 1.0
            continue
        shapes.setdefault((len(before), len(after), _mwu_method(before, after)), []).append(i)
    if not shapes:
        return out
    import numpy as np  # imported on use, with scipy (~0.3 s to load)
    from scipy.stats import mannwhitneyu

    for (_, _, method), idx in shapes.items():
        x = np.array([pairs[i][0] for i in idx], dtype=float)
        y = np.array([pairs[i][1] for i in idx], dtype=float)
        p = mannwhitneyu(x, y, alternative="two-sided", method=method, axis=1).pvalue
        for i, value in zip(idx, np.atleast_1d(p), strict=True):
            out[i] = float(value)
    return out


def change_point(values: Sequence[float]) -> int | None:
    """Return the index of the first value after the most likely single mean shift.

    The split maximises the between-segment sum of squares, t·(n−t)/n · (mean₁ − mean₂)²
    (the one-split step of binary segmentation); None for fewer than two values.
    """
    n = len(values)
    if n < 2:
        return None
    total = sum(values)
    best, best_t, left = -1.0, None, 0.0
    for t in range(1, n):
        left += values[t - 1]
        mean_l, mean_r = left / t, (total - left) / (n - t)
        score = t * (n - t) / n * (mean_l - mean_r) ** 2
        if score > best:
            best, best_t = score, t
    return best_t


def regression_row(
    window: dict[str, Any],
    series: list[dict[str, Any]],
    split_at: Any,
    *,
    min_samples: int,
    threshold: float,
    p_value: float | None = None,
) -> dict[str, Any]:
    """Return one group's regression answer from its window medians and per-run series.

    `p_value` is the Mann–Whitney p-value of the series split at `split_at` (see
    `regression_rows`, which computes them for many groups at once).
    """
    rel = relative_change(window["baseline_median"], window["recent_median"])
    better = direction(window["metric"], window["unit"])
    row: dict[str, Any] = {
        **window,
        "relative_change": rel,
        "better": better,
        "p_value": None,
        "change_run_id": None,
        "change_at": None,
    }
    if window["baseline_n"] < min_samples or window["recent_n"] < min_samples:
        row["verdict"] = "insufficient_data"
        return row
    verdict = change_verdict(rel, better, threshold)
    if series:
        row["p_value"] = p_value
        at = change_point([s["value"] for s in series])
        if at is not None:
            row["change_run_id"] = series[at]["run_id"]
            row["change_at"] = series[at]["at"]
        if row["p_value"] is not None and row["p_value"] >= ALPHA and verdict != "unchanged":
            verdict = "unchanged"  # a shift the test cannot tell from noise
    row["verdict"] = verdict
    return row


def split_values(series: list[dict[str, Any]], split_at: Any) -> tuple[list[float], list[float]]:
    """Return a series' values before and from `split_at`."""
    before = [s["value"] for s in series if s["at"] < split_at]
    after = [s["value"] for s in series if s["at"] >= split_at]
    return before, after


def regression_rows(
    groups: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]],
    split_at: Any,
    *,
    min_samples: int,
    threshold: float,
) -> list[dict[str, Any]]:
    """Return the regression answers of (window, series) groups, testing them all at once."""
    p_values = mann_whitney_ps([split_values(series, split_at) for _, series in groups])
    return [
        regression_row(w, series, split_at, min_samples=min_samples, threshold=threshold, p_value=p)
        for (w, series), p in zip(groups, p_values, strict=True)
    ]


# --- compare and gate ------------------------------------------------------------------------


@dataclass(frozen=True)
class GateRule:
    """One `fail_on` rule: a name and, for `regression`, a relative threshold."""

    name: str
    threshold: float | None = None


GATE_RULES = ("new_failures", "failures", "missing", "regression")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)(%?)$")


def parse_fail_on(text: str) -> list[GateRule]:
    """Parse `new_failures,failures,missing,regression:5%` (regression takes % or a fraction)."""
    rules = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, arg = part.partition(":")
        if name not in GATE_RULES:
            raise BadRequest(
                f"fail_on: unknown rule {name!r} (known: {', '.join(GATE_RULES)})",
                code="invalid_fail_on",
            )
        threshold = None
        if name == "regression":
            match = _PERCENT.match(arg or "0%")
            if not match:
                raise BadRequest(
                    f"fail_on: regression takes a threshold like 5% or 0.05, not {arg!r}",
                    code="invalid_fail_on",
                )
            value = float(match.group(1))
            threshold = value / 100 if match.group(2) else value
            if threshold > 100:
                raise BadRequest(
                    "fail_on: regression threshold at most 10000%", code="invalid_fail_on"
                )
        elif arg:
            raise BadRequest(f"fail_on: {name} takes no argument", code="invalid_fail_on")
        rules.append(GateRule(name, threshold))
    if len(rules) > 16:
        raise BadRequest("fail_on: at most 16 rules", code="invalid_fail_on")
    return rules


def metric_delta(row: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Return a compare metric row with its delta, relative change and verdict.

    A metric only one side has is `one_side` (its other median is null), not `unchanged`.
    """
    base, head = row["base_median"], row["head_median"]
    rel = relative_change(base, head)
    better = direction(row["metric"], row["unit"])
    one_side = base is None or head is None
    return {
        **row,
        "delta": None if one_side else head - base,
        "relative_change": rel,
        "better": better,
        "verdict": "one_side" if one_side else change_verdict(rel, better, threshold),
    }


def gate(
    rules: Sequence[GateRule], counts: dict[str, int], metrics: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Return {"status": pass|fail, "reasons": [...]} for a comparison under `fail_on` rules."""
    reasons = []
    for rule in rules:
        if rule.name == "new_failures" and counts.get("newly_failing", 0):
            reasons.append(f"{counts['newly_failing']} newly failing tests")
        elif rule.name == "failures":
            failing = counts.get("newly_failing", 0) + counts.get("still_failing", 0)
            if failing:
                reasons.append(f"{failing} failing tests")
        elif rule.name == "missing" and counts.get("missing", 0):
            reasons.append(f"{counts['missing']} missing tests")
        elif rule.name == "regression":
            limit = rule.threshold or 0.0
            for m in metrics:
                rel, better = m["relative_change"], m["better"]
                if rel is None or better is None:
                    continue
                worse = rel if better == "lower" else -rel
                if worse > limit:
                    reasons.append(
                        f"{m['metric']} ({m['model_name']}, {m['hardware']}) "
                        f"{rel:+.1%} worse than the {limit:.1%} allowed"
                    )
    return {"status": "fail" if reasons else "pass", "reasons": reasons}
