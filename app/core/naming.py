"""Names shared by both components: model slugs and test-module file names."""

from __future__ import annotations

import hashlib
import re

# A file name must stay under 255 bytes: longer slugs keep a prefix and a hash of the full name.
MAX_SLUG = 200
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def model_slug(model_name: str) -> str:
    """Return the lower-case model name with every non-alphanumeric run turned into `_`.

    Past `MAX_SLUG` characters the slug is cut and ends with a hash of the whole name, so that
    distinct long names keep distinct file names that fit a file system's 255-byte limit.
    """
    slug = _NON_ALNUM.sub("_", model_name.lower())
    if len(slug) <= MAX_SLUG:
        return slug
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:16]
    return f"{slug[: MAX_SLUG - 17]}_{digest}"


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
