"""Sizes of the data set and of each measurement, per scale (tiny, quick, full)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SEED = 20261127
DEVICES = ("cpu", "cuda", "rocm", "mps", "openvino", "qnn", "webgpu", "webnn")


@dataclass(frozen=True)
class Scale:
    """How big the data set is and how long each measurement runs."""

    name: str
    runs: int
    cases: int
    metrics: int
    models: int
    devices: int
    days: int
    # 1. ingest through HTTP
    large_runs: int  # runs of `large_details` per-test rows, one client
    large_details: int
    small_runs: int  # runs of `small_details` rows, `small_clients` concurrent clients
    small_details: int
    small_clients: int
    small_metrics: int  # metric points and tags in each small run (issue 14: 20 and 5)
    small_tags: int
    single_runs: int  # runs of the small shape posted one after another by one client
    # 3. query latency: timed repetitions per endpoint (after one warm-up)
    query_reps: int
    # 4. export: timed repetitions per format
    export_reps: int
    # 5. small writes
    write_clients: int
    write_seconds: float

    def as_dict(self) -> dict[str, Any]:
        """Return the scale as plain data for the results file."""
        return asdict(self)


SCALES = {
    "tiny": Scale(
        name="tiny",
        runs=300,
        cases=3_000,
        metrics=3_000,
        models=20,
        devices=8,
        days=90,
        large_runs=2,
        large_details=1_000,
        small_runs=32,
        small_details=50,
        small_clients=16,
        small_metrics=20,
        small_tags=5,
        single_runs=8,
        query_reps=3,
        export_reps=1,
        write_clients=32,
        write_seconds=1.0,
    ),
    "quick": Scale(
        name="quick",
        runs=20_000,
        cases=200_000,
        metrics=200_000,
        models=200,
        devices=8,
        days=90,
        large_runs=4,
        large_details=10_000,
        small_runs=160,
        small_details=50,
        small_clients=16,
        small_metrics=20,
        small_tags=5,
        single_runs=40,
        query_reps=15,
        export_reps=2,
        write_clients=32,
        write_seconds=6.0,
    ),
    "full": Scale(
        name="full",
        runs=100_000,
        cases=1_000_000,
        metrics=1_000_000,
        models=1_000,
        devices=8,
        days=90,
        large_runs=10,
        large_details=10_000,
        small_runs=800,
        small_details=50,
        small_clients=16,
        small_metrics=20,
        small_tags=5,
        single_runs=200,
        query_reps=30,
        export_reps=3,
        write_clients=32,
        write_seconds=30.0,
    ),
}
