"""Exports load typed in pandas, polars and DuckDB: lists, timestamps, nulls, grouped columns."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from tests.components.generator.support import full_document
from tests.components.test_suite.test_api_transfer import populate

B = "/api/test/db"
FORMATS = ("csv", "jsonl", "parquet")


def export(client: TestClient, settings: Settings, table: str, fmt: str, base: str = B) -> Path:
    """Export one table and return the file; its schema side file is named in the answer."""
    name = f"{table}.{fmt}"
    response = client.post(f"{base}/export", json={"filename": name, "table": table})
    assert response.status_code == 200, response.text
    assert response.json()["schema_file"] == f"{name}.schema.json"
    return Path(settings.export_dir) / name


def fields(path: Path) -> dict[str, str]:
    """Return column name -> type from an export's schema side file."""
    side = json.loads(path.with_name(path.name + ".schema.json").read_text())
    assert side["file"] == path.name and side["format"] == "accelerate-tracking-table"
    return {f["name"]: f["type"] for f in side["fields"]}


# --- loaders: what a user writes with the side file in hand (parquet needs none) -------------

PANDAS = {"string": "string", "integer": "Int64", "number": "Float64", "boolean": "boolean"}
POLARS = {"string": pl.String, "integer": pl.Int64, "number": pl.Float64, "boolean": pl.Boolean}


def with_pandas(path: Path, fmt: str) -> pd.DataFrame:
    """Load an export into pandas."""
    if fmt == "parquet":  # typed by the file; pandas' nullable dtypes keep integers with nulls
        return pd.read_parquet(path, dtype_backend="numpy_nullable")
    types = fields(path)
    text = {n for n, t in types.items() if t in ("datetime", "array", "object")}
    dtypes = {n: PANDAS.get(t, "object") for n, t in types.items() if n not in text}
    if fmt == "csv":
        frame = pd.read_csv(path, dtype={**dtypes, **{n: "string" for n in text}})
    else:
        frame = pd.read_json(path, lines=True, dtype=False).astype(dtypes)
    for name, kind in types.items():
        if kind == "datetime":
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
        elif kind in ("array", "object") and fmt == "csv":
            frame[name] = frame[name].map(lambda v: None if pd.isna(v) else json.loads(v))
    return frame


def with_polars(path: Path, fmt: str) -> pl.DataFrame:
    """Load an export into polars."""
    if fmt == "parquet":
        return pl.read_parquet(path)
    types = fields(path)
    lists = {n for n, t in types.items() if t == "array"}
    schema: dict[str, Any] = {n: POLARS.get(t, pl.String) for n, t in types.items()}
    if fmt == "csv":
        frame = pl.read_csv(path, schema=schema)
        frame = frame.with_columns(pl.col(n).str.json_decode(pl.List(pl.String)) for n in lists)
    else:
        frame = pl.read_ndjson(path, schema={**schema, **{n: pl.List(pl.String) for n in lists}})
    stamps = [n for n, t in types.items() if t == "datetime"]
    return frame.with_columns(pl.col(n).str.to_datetime(time_zone="UTC") for n in stamps)


def with_duckdb(path: Path, fmt: str) -> dict[str, tuple[str, list[Any]]]:
    """Load an export with DuckDB; return column -> (type, values)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if fmt == "parquet":
        relation = con.sql(f"SELECT * FROM read_parquet('{path}')")
    else:
        side = json.loads(path.with_name(path.name + ".schema.json").read_text())["fields"]
        if fmt == "csv":  # lists arrive as JSON text: read them as JSON, cast to lists
            columns = {f["name"]: "JSON" if f["type"] == "array" else f["sql_type"] for f in side}
            source = f"read_csv('{path}', header = true, columns = {columns!r})"
        else:
            columns = {f["name"]: f["sql_type"] for f in side}
            source = f"read_json('{path}', format = 'newline_delimited', columns = {columns!r})"
        cast = [
            f'CAST("{f["name"]}" AS VARCHAR[]) AS "{f["name"]}"'
            if f["type"] == "array"
            else f'"{f["name"]}"'
            for f in side
        ]
        relation = con.sql(f"SELECT {', '.join(cast)} FROM {source}")
    names, kinds = relation.columns, [str(t) for t in relation.types]
    rows = relation.fetchall()
    return {n: (k, [r[i] for r in rows]) for i, (n, k) in enumerate(zip(names, kinds, strict=True))}


# --- the runs table ----------------------------------------------------------------------------


def by_run(values: list[Any], run_ids: list[Any]) -> dict[str, Any]:
    return dict(zip(run_ids, values, strict=True))


@pytest.mark.parametrize("fmt", FORMATS)
def test_runs_load_typed_with_counts_outcome_and_batches(
    client: TestClient, settings: Settings, fmt: str
) -> None:
    populate(client)
    path = export(client, settings, "test_runs", fmt)

    frame = with_pandas(path, fmt)
    assert str(frame["started_at"].dtype) in ("datetime64[us, UTC]", "datetime64[ns, UTC]")
    assert str(frame["timeout"].dtype) in ("Int64", "int64", "Int32", "int32")
    assert str(frame["tests_passed"].dtype) in ("Int64", "int64", "Int32", "int32")
    assert frame["error"].isna().all() and str(frame["error"].dtype) in ("string", "str", "object")
    rows = frame.set_index("run_id")
    assert list(rows.loc["full-1", "hardware"]) == ["cpu", "cuda"]
    assert list(rows.loc["r-a", "batch_ids"]) == ["b1", "b2"]
    assert rows.loc["r-b", "outcome"] == "failed" and rows.loc["r-a", "tests_passed"] == 3
    assert pd.isna(rows.loc["r-c", "outcome"])  # still running: no outcome yet

    polars = with_polars(path, fmt)
    assert polars.schema["hardware"] == pl.List(pl.String)
    assert polars.schema["batch_ids"] == pl.List(pl.String)
    assert polars.schema["started_at"] == pl.Datetime("us", "UTC")
    assert polars.schema["timeout"] in (pl.Int64, pl.Int32)
    assert polars.schema["tests_failed"] in (pl.Int64, pl.Int32)
    assert polars.schema["outcome"] == pl.String
    grouped = dict(polars.group_by("outcome").len().drop_nulls().iter_rows())
    assert grouped == {"failed": 3}

    duck = with_duckdb(path, fmt)
    run_ids = duck["run_id"][1]
    assert duck["hardware"][0] == "VARCHAR[]"
    assert duck["started_at"][0] == "TIMESTAMP WITH TIME ZONE"
    assert duck["timeout"][0] in ("INTEGER", "BIGINT")
    assert duck["tests_skipped"][0] in ("INTEGER", "BIGINT")
    assert by_run(duck["hardware"][1], run_ids)["full-1"] == ["cpu", "cuda"]
    assert by_run(duck["batch_ids"][1], run_ids)["full-1"] == ["b2", "nightly-2026-03-02"]
    started = by_run(duck["started_at"][1], run_ids)["full-1"]
    assert isinstance(started, datetime) and started.utcoffset() is not None


@pytest.mark.parametrize("fmt", ("csv", "jsonl"))
def test_text_exports_write_iso_timestamps_in_utc_and_lists_as_json(
    client: TestClient, settings: Settings, fmt: str
) -> None:
    populate(client)
    path = export(client, settings, "test_runs", fmt)
    if fmt == "csv":
        raw = pd.read_csv(path, dtype="string").set_index("run_id")
        hardware, batches = raw.loc["full-1", "hardware"], raw.loc["full-1", "batch_ids"]
        assert json.loads(hardware) == ["cpu", "cuda"]  # JSON, not `[cpu, cuda]`
        assert json.loads(batches) == ["b2", "nightly-2026-03-02"]
        started = raw.loc["full-1", "started_at"]
    else:
        row = next(json.loads(line) for line in path.read_text().splitlines() if "full-1" in line)
        started = row["started_at"]
    assert started == "2026-03-02T09:30:00.123456Z"
    assert fields(path)["started_at"] == "datetime" and fields(path)["hardware"] == "array"


@pytest.mark.parametrize("fmt", FORMATS)
def test_cases_and_metrics_carry_the_runs_model_and_time(
    client: TestClient, settings: Settings, fmt: str
) -> None:
    populate(client)
    cases = with_polars(export(client, settings, "test_run_cases", fmt), fmt)
    assert cases.schema["run_started_at"] == pl.Datetime("us", "UTC")
    assert cases.schema["duration_ms"] == pl.Float64
    assert cases.schema["position"] in (pl.Int64, pl.Int32)
    per_model = dict(cases.group_by("model_name").len().iter_rows())
    assert set(per_model) == {"bert-base-uncased", "gpt2", "t5"}
    metrics = with_pandas(export(client, settings, "test_run_metrics", fmt), fmt)
    assert str(metrics["timestamp"].dtype).startswith("datetime64[")
    assert str(metrics["metric_value"].dtype) in ("Float64", "float64")
    assert set(metrics["model_name"]) == {"bert-base-uncased", "gpt2", "t5"}
    duck = with_duckdb(export(client, settings, "test_run_steps", fmt), fmt)
    assert duck["started_at"][0] == "TIMESTAMP WITH TIME ZONE"


@pytest.mark.parametrize("fmt", FORMATS)
def test_generator_tasks_load_typed(client: TestClient, settings: Settings, fmt: str) -> None:
    doc = full_document()
    assert client.post("/api/generator/db/tasks", json=doc).status_code == 201
    path = export(client, settings, "generator_tasks", fmt, base="/api/generator/db")
    polars = with_polars(path, fmt)
    assert polars.schema["hardware"] == pl.List(pl.String)
    assert polars.schema["started_at"] == pl.Datetime("us", "UTC")
    assert polars["hardware"].to_list() == [doc["hardware"]]
    duck = with_duckdb(path, fmt)
    assert duck["hardware"][0] == "VARCHAR[]" and duck["hardware"][1] == [doc["hardware"]]
    frame = with_pandas(path, fmt)
    assert list(frame.loc[0, "hardware"]) == doc["hardware"]


def test_the_json_document_keeps_raw_tables_for_import(
    client: TestClient, settings: Settings
) -> None:
    populate(client)
    response = client.post(f"{B}/export", json={"filename": "all.json"})
    assert response.json()["schema_file"] is None
    document = json.loads((Path(settings.export_dir) / "all.json").read_text())
    run = document["tables"]["test_runs"][0]
    assert "outcome" not in run and "batch_ids" not in run  # import takes table columns only
    assert run["started_at"].endswith("Z")
