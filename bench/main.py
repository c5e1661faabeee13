"""Run the whole bench: build the data set, start the server, measure, write the results."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    dataset,
    export,
    ingest,
    pages,
    plugin,
    postgres,
    queries,
    report,
    write_path,
    writes,
)
from bench.report import log
from bench.scales import SCALES, Scale
from bench.server import ROOT, RssSampler, Server

SMALL_BULK_SAMPLE = 200  # runs of 50 rows timed through the store and raw DuckDB in-process
SECTIONS = ("bulk", "queries", "pages", "export", "ingest", "writes", "plugin")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line (the scale also comes from BENCH_SCALE)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default=os.environ.get("BENCH_SCALE", "quick"),
        help="data set and run lengths (default: $BENCH_SCALE or quick)",
    )
    parser.add_argument(
        "--backend",
        choices=("duckdb", "postgres"),
        default=os.environ.get("BENCH_BACKEND", "duckdb"),
        help="duckdb (default: $BENCH_BACKEND or duckdb) or postgres: the queries, pages and"
        " concurrent ingest on PostgreSQL (BENCH_PG_URL or a throwaway cluster) next to DuckDB",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="folder of the JSON files"
    )
    parser.add_argument(
        "--benchmarks-md", type=Path, default=ROOT / "BENCHMARKS.md", help="file to update"
    )
    parser.add_argument("--no-md", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--data-cache",
        type=Path,
        help="folder keeping the built data set per scale: built once, reused by later runs",
    )
    parser.add_argument(
        "--only",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        help=f"comma-separated sections to measure (default all: {','.join(SECTIONS)};"
        f" on postgres: {','.join(postgres.SECTIONS)})",
    )
    parser.add_argument(
        "--reps", type=int, help="timed repetitions per query and page (default: the scale's)"
    )
    parser.add_argument(
        "--ingest-runs",
        type=int,
        help="runs posted by the concurrent ingest (default: the scale's small_runs)",
    )
    parser.add_argument(
        "--pg-workers",
        type=lambda text: [int(n) for n in text.split(",")],
        default=list(postgres.PG_WORKERS),
        help="on postgres: uvicorn --workers counts the ingest is measured with (default 1,2,4;"
        " the reads run on the first)",
    )
    parser.add_argument(
        "--pg-run-id-indexes",
        action="store_true",
        help="on postgres, an experiment: index run_id in the child tables after the load"
        " (the app's schema has no secondary index)",
    )
    args = parser.parse_args(argv)
    known = postgres.SECTIONS if args.backend == "postgres" else SECTIONS
    if args.only is None:
        args.only = list(known)
    unknown = sorted(set(args.only) - set(known))
    if unknown:
        parser.error(
            f"--only: unknown sections {unknown} (known on {args.backend}: {', '.join(known)})"
        )
    return args


def _dataset(scale: Scale, work: Path, cache: Path | None) -> tuple[Path, datetime, Any]:
    """Return the data set file, its anchor and its build figures (cached when asked)."""
    if cache is not None:
        log(f"data set of the {scale.name} scale from the cache {cache} (built when missing)")
        return dataset.cached(cache, scale)
    anchor = dataset.anchor_time()
    data = work / "data.duckdb"
    log(f"building the {scale.name} data set ({scale.runs:,} runs) through the store")
    return data, anchor, dataset.build(data, scale, anchor)


def run(
    scale: Scale, work: Path, cache: Path | None = None, only: Sequence[str] = SECTIONS
) -> dict[str, Any]:
    """Measure the chosen sections at one scale inside the scratch folder; return the figures."""
    data, anchor, built = _dataset(scale, work, cache)
    log(f"  {built}")
    results: dict[str, Any] = {"dataset": built}

    docs = _documents(scale, anchor)
    if "bulk" in only:
        log("ingest in-process: store.replace_cases vs raw DuckDB Arrow INSERT … SELECT")
        results["bulk"] = {
            "large": ingest.store_vs_raw(work, data, docs.large),
            "small": ingest.store_vs_raw(work, data, docs.small[:SMALL_BULK_SAMPLE]),
        }
        log(f"  {results['bulk']}")
    elif "ingest" in only:
        log("raw DuckDB Arrow INSERT … SELECT of the large runs (the ingest's raw figure)")
        docs.raw_large = ingest.store_vs_raw(work, data, docs.large)
    # Raw DuckDB's naive writes (bench/write_path.py) go to a writable copy of their own.
    raw_db = work / "write_raw.duckdb"
    if {"ingest", "writes"} & set(only):
        shutil.copy(data, raw_db)

    served = work / "server" / "test_runs.duckdb"
    served.parent.mkdir()
    shutil.copy(data, served)
    raw_copy = work / "raw.duckdb"
    shutil.copy(data, raw_copy)
    points = queries.endpoints(scale)
    captured: dict[str, list[queries.Statement]] = {}
    if "queries" in only:
        log("capturing the SQL each endpoint runs (app in-process on a copy)")
        captured = queries.capture_sql(work, raw_copy, points)
    con = queries.raw_connection(raw_copy)

    server = Server(served.parent, served)
    try:
        server.start()
        with RssSampler(server.pid) as sampler:
            results["server_idle_rss_mb"] = round(sampler.current(), 1)
            if "queries" in only:
                log("query latency: HTTP vs the same SQL on raw DuckDB")
                results["queries"] = queries.measure(
                    server.url, con, points, captured, scale.query_reps
                )
                for name, q in results["queries"].items():
                    log(
                        f"  {name}: http p50 {q['http']['p50_ms']} p95 {q['http']['p95_ms']} ms,"
                        f" raw p50 {q['raw']['p50_ms']} p95 {q['raw']['p95_ms']} ms"
                    )
            if "pages" in only:
                log("dashboard pages: HTML with its data over HTTP")
                results["pages"] = pages.measure(server.url, scale)
                for name, p in results["pages"].items():
                    log(f"  {name}: p50 {p['http']['p50_ms']} p95 {p['http']['p95_ms']} ms")
            if "export" in only:
                log("export: POST /export vs DuckDB COPY; streamed GET /export")
                results["export"] = export.measure(
                    server.url, con, server.export_dir, work, scale.export_reps, sampler
                )
                for name, e in results["export"].items():
                    log(f"  {name}: {e}")
            if "ingest" in only:
                results["ingest"] = _ingest(server.url, scale, work, docs, raw_db, sampler)
            if "writes" in only:
                results.update(_writes(server.url, scale, raw_db, sampler))
            if "plugin" in only:
                log(f"pytest plugin: {plugin.RESULTS[scale.name]:,} results, recording vs inert")
                results["plugin"] = plugin.measure(server.url, work, scale.name)
                log(f"  {results['plugin']}")
    finally:
        server.stop()
        con.close()
    return results


@dataclasses.dataclass
class _Documents:
    """The ingest's documents, and raw DuckDB's large-run figure when `bulk` is not measured."""

    large: list[ingest.Document]
    echo: list[ingest.Document]
    small: list[ingest.Document]
    single: list[ingest.Document]
    small_minimal: list[ingest.Document]
    single_minimal: list[ingest.Document]
    raw_large: dict[str, Any] | None = None


def _documents(scale: Scale, anchor: datetime) -> _Documents:
    """Return the documents of every ingest workload (small runs with metrics and tags)."""
    large, details = scale.large_runs, scale.large_details
    shape = {"metrics": scale.small_metrics, "tags": scale.small_tags}
    small, single, size = scale.small_runs, scale.single_runs, scale.small_details
    return _Documents(
        ingest.documents(scale, anchor, "large", large, details),
        ingest.documents(scale, anchor, "echo", large, details),
        ingest.documents(scale, anchor, "small", small, size, **shape),
        ingest.documents(scale, anchor, "single", single, size, **shape),
        ingest.documents(scale, anchor, "small-min", small, size, **shape),
        ingest.documents(scale, anchor, "single-min", single, size, **shape),
    )


def _ingest(
    url: str, scale: Scale, work: Path, docs: _Documents, raw_db: Path, sampler: RssSampler
) -> dict[str, Any]:
    """Time HTTP ingest (large runs, small concurrent and one by one) and raw DuckDB's."""
    log(f"HTTP ingest: {scale.large_runs} runs of {scale.large_details:,} details")
    http_large = ingest.http_sequential(url, docs.large, sampler, minimal=True)
    log(f"  Prefer: return=minimal: {http_large}")
    http_echo = ingest.http_sequential(url, docs.echo, sampler)
    log(f"  full answer: {http_echo}")
    shape = (
        f"{scale.small_details} details + {scale.small_metrics} metrics + {scale.small_tags} tags"
    )
    log(f"HTTP ingest: {scale.small_runs} runs of {shape}, {scale.small_clients} clients")
    http_small = ingest.http_concurrent(url, docs.small, scale.small_clients, sampler)
    log(f"  {http_small}")
    log(f"HTTP ingest: {scale.single_runs} runs of {shape}, 1 client")
    http_single = ingest.http_sequential(url, docs.single, sampler)
    log(f"  {http_single}")
    # The same runs answered with their summary (as the pytest plugin asks): the writes alone,
    # as raw DuckDB's naive loop below does them (it reads nothing back).
    log(f"  the same, Prefer: return=minimal, {scale.small_clients} clients")
    small_min = ingest.http_concurrent(
        url, docs.small_minimal, scale.small_clients, sampler, minimal=True
    )
    log(f"  {small_min}")
    log("  the same, Prefer: return=minimal, 1 client")
    single_min = ingest.http_sequential(url, docs.single_minimal, sampler, minimal=True)
    log(f"  {single_min}")
    out = {
        "http_large": http_large,
        "http_large_full_answer": http_echo,
        "http_small": http_small,
        "http_small_single": http_single,
        "http_small_minimal": small_min,
        "http_small_single_minimal": single_min,
    }
    log(f"raw DuckDB, naive: the same runs, {scale.small_clients} threads through one lock")
    out["raw_small"] = write_path.runs(raw_db, docs.small, scale.small_clients)
    log(f"  {out['raw_small']}")
    log("raw DuckDB, naive: the same runs, 1 thread")
    out["raw_small_single"] = write_path.runs(raw_db, docs.single, 1)
    log(f"  {out['raw_small_single']}")
    if docs.raw_large is not None:
        out["raw_large"] = docs.raw_large
    rid = docs.small[0].run_id
    log(f"GET /run/{{id}} of a run of {shape} ({rid}): HTTP vs its SQL on raw DuckDB")
    out["get_run_small"] = write_path.get_run(url, work, raw_db, rid, scale.query_reps, sampler)
    log(f"  http {out['get_run_small']['http']}, raw {out['get_run_small']['raw']}")
    return out


def _writes(url: str, scale: Scale, raw_db: Path, sampler: RssSampler) -> dict[str, Any]:
    """Time the small writes (full and minimal answer), raw DuckDB's and the HTTP ceiling."""
    clients, seconds = scale.write_clients, scale.write_seconds
    log(f"small writes: {clients} clients for {seconds} s")
    out = {"writes": writes.measure(url, clients, seconds, sampler)}
    log(f"  {out['writes']}")
    log("small writes, PATCH with Prefer: return=minimal (as the pytest plugin sends)")
    out["writes_minimal"] = writes.measure(url, clients, seconds, sampler, minimal=True)
    log(f"  {out['writes_minimal']}")
    log(f"small writes on raw DuckDB, naive: {clients} threads through one lock, {seconds} s")
    out["writes_raw"] = write_path.small_writes(raw_db, clients, seconds)
    log(f"  {out['writes_raw']}")
    log(f"HTTP ceiling: GET {writes.CEILING_PATH} (no database), {clients} clients, {seconds} s")
    out["writes_ceiling"] = writes.ceiling(url, clients, seconds, sampler)
    log(f"  {out['writes_ceiling']}")
    return out


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    """Run the bench, write bench/results/<timestamp>.json and the BENCHMARKS.md section."""
    args = parse_args(argv)
    scale = SCALES[args.scale]
    if args.reps:
        scale = dataclasses.replace(scale, query_reps=args.reps)
    if args.ingest_runs:
        scale = dataclasses.replace(scale, small_runs=args.ingest_runs)
    began = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    work = args.work or Path(tempfile.mkdtemp(prefix=f"bench-{scale.name}-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = round(os.getloadavg()[0], 2)
    log(f"scale {scale.name}, backend {args.backend}; scratch folder {work}")
    try:
        if args.backend == "postgres":
            data, anchor, built = _dataset(scale, work, args.data_cache)
            measured = {
                "dataset": built,
                **postgres.run(
                    scale,
                    work,
                    data,
                    anchor,
                    args.only,
                    args.pg_workers,
                    run_id_indexes=args.pg_run_id_indexes,
                ),
            }
        else:
            measured = run(scale, work, args.data_cache, args.only)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    results: dict[str, Any] = {
        "date": now.isoformat(),
        "scale": scale.as_dict(),
        "machine": {
            **report.machine(),
            "load_average_1m_at_start": load_before,
            "load_average_at_end": postgres.loadavg(),
        },
        "versions": report.versions(),
        **measured,
        "wall_s": round(time.perf_counter() - began, 1),
    }
    if args.backend == "postgres":
        stamp = now.strftime("%Y%m%dT%H%M%SZ") + "-postgres"
        path = report.write_json(results, args.out, stamp)
        print(postgres.markdown(results, _shown(path)))
        log(f"wrote {path} (BENCHMARKS.md is not updated on postgres: paste the tables)")
        return 0
    results["targets"] = report.verdicts(results)
    results["write_path"] = report.write_path_rows(results)
    path = report.write_json(results, args.out, now.strftime("%Y%m%dT%H%M%SZ"))
    shown = _shown(path)
    section = report.markdown(results, shown)
    print(section)
    if not args.no_md:
        report.update_benchmarks_md(args.benchmarks_md, scale.name, section)
        log(f"updated {args.benchmarks_md}")
    log(f"wrote {path}")
    return 0
