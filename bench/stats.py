"""Small helpers for timings: percentiles and rounding."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return a continuous percentile (linear interpolation, as DuckDB's quantile_cont)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * fraction
    low = math.floor(pos)
    high = math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def ms(seconds: float) -> float:
    """Return seconds as milliseconds, rounded to 0.01 ms."""
    return round(seconds * 1000.0, 2)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Return p50/p95/min/max of timings in milliseconds."""
    return {
        "p50_ms": ms(percentile(seconds, 0.5)),
        "p95_ms": ms(percentile(seconds, 0.95)),
        "min_ms": ms(min(seconds)) if seconds else math.nan,
        "max_ms": ms(max(seconds)) if seconds else math.nan,
        "n": len(seconds),
    }


def ratio(a: float, b: float) -> float | None:
    """Return a / b rounded to 0.01, or None when b is 0."""
    return round(a / b, 2) if b else None
