"""The bench data set: generated from a fixed seed, loaded through the project's own store code."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.components.test_suite.models import (
    Run,
    RunBatch,
    RunBatchLink,
    RunCase,
    RunMetric,
    RunResult,
    RunStep,
    RunTag,
)
from app.core.bulk import insert_rows
from app.core.db import DatabaseRegistry
from app.core.migrate import upgrade
from app.core.records import table_of
from bench.scales import DEVICES, SEED, Scale

FAMILIES = ("bert", "gpt2", "t5", "vit", "llama", "whisper", "resnet", "clip", "bart", "mistral")
SIZES = ("tiny", "small", "base", "large", "xl")
TEST_TYPES = ("basic", "comprehensive", "fault_tolerance")
RUN_STATUSES = (("completed", 80), ("error", 10), ("timeout", 5), ("cancelled", 5))
CASE_STATUSES = (
    ("passed", 85),
    ("failed", 7),
    ("skipped", 5),
    ("error", 1),
    ("xfailed", 1),
    ("xpassed", 1),
)
METRICS = (
    ("latency_ms", "ms"),
    ("throughput_per_sec", "items/s"),
    ("memory_mb", "MB"),
    ("load_time_s", "s"),
    ("first_token_ms", "ms"),
)
STEPS = ("setup", "run_tests", "teardown")
CHUNK_RUNS = 10_000  # runs generated and inserted per transaction
RUNS_PER_BATCH = 20
BATCH_EVERY = 5  # one run in BATCH_EVERY is a batch member


def model_names(scale: Scale) -> list[str]:
    """Return the data set's model names (family-size-number)."""
    return [
        f"{FAMILIES[i % len(FAMILIES)]}-{SIZES[(i // len(FAMILIES)) % len(SIZES)]}-{i:04d}"
        for i in range(scale.models)
    ]


def run_id(i: int) -> str:
    """Return the id of the i-th generated run."""
    return f"run-{i:07d}"


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...], k: int) -> list[str]:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table], k=k)


def _spread(total: int, parts: int, index: int) -> int:
    # Split `total` into `parts` near-equal integers; return the index-th.
    return total // parts + (1 if index < total % parts else 0)


@dataclass
class Chunk:
    """Rows of every table for a range of runs."""

    tables: dict[Any, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, model: Any, row: dict[str, Any]) -> None:
        """Append a row to a table's list."""
        self.tables.setdefault(model, []).append(row)


def generate(scale: Scale, anchor: datetime, start: int, stop: int) -> Chunk:
    """Generate the rows of runs start..stop-1 (deterministic for a given seed and anchor)."""
    rng = random.Random(SEED * 1_000_003 + start)
    models = model_names(scale)
    devices = DEVICES[: scale.devices]
    window = scale.days * 86_400
    chunk = Chunk()
    statuses = _weighted(rng, RUN_STATUSES, stop - start)
    for i in range(start, stop):
        rid = run_id(i)
        model = models[rng.randrange(len(models))]
        family = model.split("-", 1)[0]
        hardware = rng.sample(devices, 2 if rng.random() < 0.2 else 1)
        status = statuses[i - start]
        started = anchor - timedelta(seconds=rng.uniform(60, window))
        duration = rng.uniform(5.0, 600.0)
        completed = started + timedelta(seconds=duration)
        chunk.add(
            Run,
            {
                "run_id": rid,
                "model_name": model,
                "hardware": hardware,
                "test_type": TEST_TYPES[rng.randrange(3)],
                "timeout": 900,
                "save_results": True,
                "status": status,
                "progress": 1.0 if status == "completed" else round(rng.random(), 3),
                "current_step": "completed" if status == "completed" else "run_tests",
                "started_at": started,
                "completed_at": completed,
                "duration": duration,
                "error": None if status == "completed" else f"{status}: simulated failure",
                "result_file": None,
                "creator": "bench",
                "created_at": started,
            },
        )
        n_cases = _spread(scale.cases, scale.runs, i)
        case_statuses = _weighted(rng, CASE_STATUSES, n_cases)
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        for pos, cs in enumerate(case_statuses):
            bucket = {"xpassed": "passed", "error": "failed", "xfailed": "skipped"}.get(cs, cs)
            counts[bucket] += 1
            chunk.add(
                RunCase,
                {
                    "run_id": rid,
                    "position": pos,
                    "name": f"tests/test_{family}.py::test_case_{pos:04d}",
                    "status": cs,
                    "duration_ms": round(rng.uniform(0.1, 2_000.0), 3),
                    "error": "AssertionError: values differ" if cs in ("failed", "error") else None,
                    "hardware": hardware[pos % len(hardware)],
                },
            )
        chunk.add(
            RunResult,
            {
                "run_id": rid,
                "tests_passed": counts["passed"],
                "tests_failed": counts["failed"],
                "tests_skipped": counts["skipped"],
                "result_data": {"source": "bench"},
            },
        )
        for m in range(_spread(scale.metrics, scale.runs, i)):
            name, unit = METRICS[m % len(METRICS)]
            chunk.add(
                RunMetric,
                {
                    "run_id": rid,
                    "metric_name": name,
                    "metric_value": round(rng.uniform(1.0, 1_000.0), 3),
                    "metric_unit": unit,
                    "hardware": hardware[(m // len(METRICS)) % len(hardware)],
                    "timestamp": started + timedelta(seconds=m),
                },
            )
        step_start = started
        for s, step in enumerate(STEPS):
            step_end = step_start + timedelta(seconds=duration / len(STEPS))
            chunk.add(
                RunStep,
                {
                    "run_id": rid,
                    "step_name": step,
                    "status": "completed" if status == "completed" or s == 0 else "error",
                    "progress": 1.0,
                    "started_at": step_start,
                    "completed_at": step_end,
                    "duration": duration / len(STEPS),
                    "error": None,
                },
            )
            step_start = step_end
        chunk.add(RunTag, {"run_id": rid, "tag_name": "branch", "tag_value": f"br-{i % 97}"})
        chunk.add(RunTag, {"run_id": rid, "tag_name": "commit", "tag_value": f"{i * 2654435761:x}"})
        if i % BATCH_EVERY == 0:
            batch = f"batch-{i // (BATCH_EVERY * RUNS_PER_BATCH):06d}"
            chunk.add(RunBatchLink, {"run_id": rid, "batch_id": batch})
            if i % (BATCH_EVERY * RUNS_PER_BATCH) == 0:
                chunk.add(
                    RunBatch,
                    {
                        "batch_id": batch,
                        "description": "bench batch",
                        "run_count": 0,
                        "started_at": started,
                        "completed_at": completed,
                        "duration": duration,
                        "status": "completed",
                        "creator": "bench",
                        "created_at": started,
                    },
                )
    return chunk


def chunks(scale: Scale, anchor: datetime) -> Iterator[Chunk]:
    """Yield the whole data set, CHUNK_RUNS runs at a time."""
    for start in range(0, scale.runs, CHUNK_RUNS):
        yield generate(scale, anchor, start, min(start + CHUNK_RUNS, scale.runs))


def anchor_time() -> datetime:
    """Return the data set's 'now' (this hour), so `days=30` windows hold a third of the runs."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def migrate(path: Path) -> None:
    """Create an empty Test Suite database at its newest revision."""
    registry = DatabaseRegistry()
    try:
        upgrade("test_suite", registry.get(f"duckdb:///{path}"), backup=False)
    finally:
        registry.dispose()


def build(path: Path, scale: Scale, anchor: datetime) -> dict[str, Any]:
    """Create the data set's DuckDB file through the app's store code; return counts and time."""
    began = time.perf_counter()
    migrate(path)
    registry = DatabaseRegistry()
    counts: dict[str, int] = {}
    gen_seconds = 0.0
    try:
        db = registry.get(f"duckdb:///{path}")
        for_each = chunks(scale, anchor)
        while True:
            t0 = time.perf_counter()
            chunk = next(for_each, None)
            gen_seconds += time.perf_counter() - t0
            if chunk is None:
                break
            with db.writing() as session:
                for model, rows in chunk.tables.items():
                    table = table_of(model)
                    counts[table.name] = counts.get(table.name, 0) + insert_rows(
                        session, table, rows
                    )
        with db.engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
    finally:
        registry.dispose()
    total = time.perf_counter() - began
    return {
        "rows": counts,
        "generate_s": round(gen_seconds, 3),
        "load_s": round(total - gen_seconds, 3),
        "file_mb": round(path.stat().st_size / 1e6, 1),
    }


def case_details(rng: random.Random, n: int, devices: list[str]) -> list[dict[str, Any]]:
    """Return `n` per-test outcomes in the shape of the recording document's test_details."""
    statuses = _weighted(rng, CASE_STATUSES, n)
    return [
        {
            "name": f"tests/test_ingest.py::test_case_{pos:05d}",
            "status": st,
            "duration_ms": round(rng.uniform(0.1, 2_000.0), 3),
            "error": "AssertionError: values differ" if st in ("failed", "error") else None,
            "hardware": devices[pos % len(devices)],
        }
        for pos, st in enumerate(statuses)
    ]


def _shape(scale: Scale) -> dict[str, Any]:
    # What the data set depends on (not the run lengths of the measurements).
    fields = ("runs", "cases", "metrics", "models", "devices", "days")
    return {"seed": SEED, **{name: getattr(scale, name) for name in fields}}


def cached(folder: Path, scale: Scale) -> tuple[Path, datetime, dict[str, Any]]:
    """Return a data set file of `scale` kept in `folder`, built on first use; its anchor too.

    The file is read-only to the bench (each measurement works on a copy), so one build serves
    every later run: `python -m bench --data-cache DIR`. Its anchor (the data set's 'now') is
    kept beside it; windows such as `days=30` then drift by the hours since the build.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{scale.name}.duckdb"
    meta = folder / f"{scale.name}.json"
    if path.exists() and meta.exists():
        saved = json.loads(meta.read_text(encoding="utf-8"))
        if saved.get("shape") == _shape(scale):
            return path, datetime.fromisoformat(saved["anchor"]), saved["built"]
    path.unlink(missing_ok=True)
    anchor = anchor_time()
    built = build(path, scale, anchor)
    record = {"shape": _shape(scale), "anchor": anchor.isoformat(), "built": built}
    meta.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path, anchor, built
