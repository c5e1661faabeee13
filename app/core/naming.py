"""Names shared by both components: model slugs and test-module file names."""

from __future__ import annotations

import re

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def model_slug(model_name: str) -> str:
    """Return the lower-case model name with every non-alphanumeric run turned into `_`."""
    return _NON_ALNUM.sub("_", model_name.lower())


def module_filename(model_name: str) -> str:
    """Return the test module file name for a model: `test_<slug>.py`."""
    return f"test_{model_slug(model_name)}.py"


_UNIT_SUFFIXES = (
    ("_ms", "ms"),
    ("_per_sec", "items/s"),
    ("_per_second", "items/s"),
    ("_per_s", "items/s"),
    ("_mb", "MB"),
    ("_gb", "GB"),
    ("_bytes", "B"),
    ("_s", "s"),
    ("_seconds", "s"),
    ("_sec", "s"),
    ("_pct", "%"),
)


def metric_unit(name: str) -> str:
    """Guess a metric's unit from its name (`latency_ms` → ms, `memory_mb` → MB, ...)."""
    lowered = name.lower()
    for suffix, unit in _UNIT_SUFFIXES:
        if lowered.endswith(suffix):
            return unit
    if "latency" in lowered:
        return "ms"
    return ""
