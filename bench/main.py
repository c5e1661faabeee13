"""Run the whole bench: build the data set, start the server, measure, write the results."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import dataset, export, ingest, plugin, queries, report, writes
from bench.report import log
from bench.scales import SCALES, Scale
from bench.server import ROOT, RssSampler, Server

SMALL_BULK_SAMPLE = 200  # runs of 50 rows timed through the store and raw DuckDB in-process


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
        "--out", type=Path, default=ROOT / "bench" / "results", help="folder of the JSON files"
    )
    parser.add_argument(
        "--benchmarks-md", type=Path, default=ROOT / "BENCHMARKS.md", help="file to update"
    )
    parser.add_argument("--no-md", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return parser.parse_args(argv)


def run(scale: Scale, work: Path) -> dict[str, Any]:
    """Measure everything at one scale inside the scratch folder; return the figures."""
    anchor = dataset.anchor_time()
    data = work / "data.duckdb"
    log(f"building the {scale.name} data set ({scale.runs:,} runs) through the store")
    built = dataset.build(data, scale, anchor)
    log(f"  {built}")

    docs_large = ingest.documents(scale, anchor, "large", scale.large_runs, scale.large_details)
    docs_echo = ingest.documents(scale, anchor, "echo", scale.large_runs, scale.large_details)
    docs_small = ingest.documents(scale, anchor, "small", scale.small_runs, scale.small_details)

    log("ingest in-process: store.replace_cases vs raw DuckDB Arrow INSERT … SELECT")
    bulk = {
        "large": ingest.store_vs_raw(work, data, docs_large),
        "small": ingest.store_vs_raw(work, data, docs_small[:SMALL_BULK_SAMPLE]),
    }
    log(f"  {bulk}")

    served = work / "server" / "test_runs.duckdb"
    served.parent.mkdir()
    shutil.copy(data, served)
    raw_copy = work / "raw.duckdb"
    shutil.copy(data, raw_copy)
    points = queries.endpoints(scale)
    log("capturing the SQL each endpoint runs (app in-process on a copy)")
    captured = queries.capture_sql(work, raw_copy, points)
    con = queries.raw_connection(raw_copy)

    results: dict[str, Any] = {"dataset": built, "bulk": bulk}
    server = Server(served.parent, served)
    try:
        server.start()
        with RssSampler(server.pid) as sampler:
            results["server_idle_rss_mb"] = round(sampler.current(), 1)
            log("query latency: HTTP vs the same SQL on raw DuckDB")
            results["queries"] = queries.measure(
                server.url, con, points, captured, scale.query_reps
            )
            for name, q in results["queries"].items():
                log(f"  {name}: http {q['http']['p50_ms']} ms, raw {q['raw']['p50_ms']} ms")
            log("export: POST /export vs DuckDB COPY; streamed GET /export")
            results["export"] = export.measure(
                server.url, con, server.export_dir, work, scale.export_reps, sampler
            )
            for name, e in results["export"].items():
                log(f"  {name}: {e}")
            log(f"HTTP ingest: {scale.large_runs} runs of {scale.large_details:,} details")
            http_large = ingest.http_sequential(server.url, docs_large, sampler, minimal=True)
            log(f"  Prefer: return=minimal: {http_large}")
            http_echo = ingest.http_sequential(server.url, docs_echo, sampler)
            log(f"  full answer: {http_echo}")
            log(
                f"HTTP ingest: {scale.small_runs} runs of {scale.small_details} details, "
                f"{scale.small_clients} clients"
            )
            http_small = ingest.http_concurrent(
                server.url, docs_small, scale.small_clients, sampler
            )
            log(f"  {http_small}")
            results["ingest"] = {
                "http_large": http_large,
                "http_large_full_answer": http_echo,
                "http_small": http_small,
            }
            log(f"small writes: {scale.write_clients} clients for {scale.write_seconds} s")
            results["writes"] = writes.measure(
                server.url, scale.write_clients, scale.write_seconds, sampler
            )
            log(f"  {results['writes']}")
            log(f"pytest plugin: {plugin.RESULTS[scale.name]:,} results, recording vs inert")
            results["plugin"] = plugin.measure(server.url, work, scale.name)
            log(f"  {results['plugin']}")
    finally:
        server.stop()
        con.close()
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the bench, write bench/results/<timestamp>.json and the BENCHMARKS.md section."""
    args = parse_args(argv)
    scale = SCALES[args.scale]
    began = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    work = args.work or Path(tempfile.mkdtemp(prefix=f"bench-{scale.name}-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = round(os.getloadavg()[0], 2)
    log(f"scale {scale.name}; scratch folder {work}")
    try:
        measured = run(scale, work)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    results: dict[str, Any] = {
        "date": now.isoformat(),
        "scale": scale.as_dict(),
        "machine": {**report.machine(), "load_average_1m_at_start": load_before},
        "versions": report.versions(),
        **measured,
        "wall_s": round(time.perf_counter() - began, 1),
    }
    results["targets"] = report.verdicts(results)
    path = report.write_json(results, args.out, now.strftime("%Y%m%dT%H%M%SZ"))
    try:
        shown = str(path.relative_to(ROOT))
    except ValueError:
        shown = str(path)
    section = report.markdown(results, shown)
    print(section)
    if not args.no_md:
        report.update_benchmarks_md(args.benchmarks_md, scale.name, section)
        log(f"updated {args.benchmarks_md}")
    log(f"wrote {path}")
    return 0
