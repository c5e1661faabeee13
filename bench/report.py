"""Machine and versions, the targets of the issue with verdicts, the JSON file and BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from bench.stats import ratio

PACKAGES = (
    "duckdb",
    "SQLAlchemy",
    "duckdb_engine",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "pyarrow",
    "httpx",
)
RSS_LIMIT_MB = 500.0
INGEST_TARGET = 100_000
BULK_TARGET = 0.5
QUERY_FACTOR, QUERY_SLACK_MS = 1.5, 5.0
MODELS_P95_MS = 100.0
EXPORT_FACTOR = 2.0


def machine() -> dict[str, Any]:
    """Return cores, memory and CPU model of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": cpu,
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    """Return the versions of Python and of the stack's packages."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


# --- verdicts --------------------------------------------------------------------------------


def _n(value: float | int | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _row(
    target: str, measured: str, raw: str, ratio: str, limit: str, ok: bool | None
) -> dict[str, str]:
    result = "info" if ok is None else ("met" if ok else "missed")
    return {
        "target": target,
        "measured": measured,
        "raw": raw,
        "ratio": ratio,
        "limit": limit,
        "result": result,
    }


def _ingest_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Return the ingest, bulk-path and ingest-RSS target rows."""
    rows: list[dict[str, str]] = []
    scale = results["scale"]
    ing = results["ingest"]
    bulk = results["bulk"]
    large, small = ing["http_large"], ing["http_small"]
    rows.append(
        _row(
            f"HTTP ingest, runs of {scale['large_details']:,} details, 1 client, "
            "Prefer: return=minimal",
            f"{_n(large['rows_per_s'])} rows/s",
            f"{_n(bulk['large']['raw_rows_per_s'])} rows/s",
            _x(large["rows_per_s"] / bulk["large"]["raw_rows_per_s"]),
            f"≥ {INGEST_TARGET:,} rows/s",
            large["rows_per_s"] >= INGEST_TARGET and large["errors"] == 0,
        )
    )
    echo = ing.get("http_large_full_answer")
    if echo:
        rows.append(
            _row(
                f"HTTP ingest, runs of {scale['large_details']:,} details, 1 client, "
                "answer echoes every row (no Prefer)",
                f"{_n(echo['rows_per_s'])} rows/s",
                f"{_n(bulk['large']['raw_rows_per_s'])} rows/s",
                _x(echo["rows_per_s"] / bulk["large"]["raw_rows_per_s"]),
                "(no target)",
                None if echo["errors"] == 0 else False,
            )
        )
    rows.append(
        _row(
            f"HTTP ingest, runs of {scale['small_details']} details, "
            f"{scale['small_clients']} clients",
            f"{_n(small['rows_per_s'])} rows/s",
            f"{_n(bulk['small']['raw_rows_per_s'])} rows/s",
            _x(small["rows_per_s"] / bulk["small"]["raw_rows_per_s"]),
            "(no target)",
            None if small["errors"] == 0 else False,
        )
    )
    for key, label in (("large", scale["large_details"]), ("small", scale["small_details"])):
        b = bulk[key]
        rows.append(
            _row(
                f"Store bulk path (store.replace_cases), runs of {label:,}",
                f"{_n(b['store_rows_per_s'])} rows/s",
                f"{_n(b['raw_rows_per_s'])} rows/s",
                _x(b["store_vs_raw"]),
                f"≥ {BULK_TARGET:.2f}× raw",
                (b["store_vs_raw"] or 0) >= BULK_TARGET,
            )
        )
    ingest_rss = max(large["peak_rss_mb"], small["peak_rss_mb"], (echo or large)["peak_rss_mb"])
    rows.append(
        _row(
            "Server peak RSS during ingest",
            f"{ingest_rss:,.0f} MB",
            "",
            "",
            f"≤ {RSS_LIMIT_MB:.0f} MB",
            ingest_rss <= RSS_LIMIT_MB,
        )
    )
    return rows


# Reports (issue 10): p95 at full scale, and the HTTP answer within 1.5 × raw + 5 ms at p95.
REPORT_P95_MS = {
    "tests": 300.0,
    "tests/history": 300.0,
    "flaky": 300.0,
    "regressions": 300.0,
    "compare": 100.0,
    "trends": 300.0,
    "generator/trends": 300.0,
}


def _at_full(scale: dict[str, Any]) -> str:
    return "" if scale["name"] == "full" else " (target at full scale)"


def _report_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Return the report targets: p95 under the report's ceiling and within 1.5 × raw p95 + 5."""
    rows = []
    for name, ceiling in REPORT_P95_MS.items():
        q = results.get("queries", {}).get(name)
        if not q:
            continue
        h, r = q["http"], q["raw"]
        limit = min(ceiling, q["limit_p95_ms"])
        rows.append(
            _row(
                f"report {name} p95{_at_full(results['scale'])}",
                f"{h['p95_ms']:.1f} ms",
                f"{r['p95_ms']:.1f} ms",
                _x(q["ratio_p95"]),
                f"≤ {ceiling:.0f} ms and ≤ {q['limit_p95_ms']:.1f} ms",
                h["p95_ms"] <= limit,
            )
        )
    return rows


def _page_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Return one row per dashboard page: HTML with its data, p95 ≤ 1 s (issue 11)."""
    rows = []
    for name, p in results.get("pages", {}).items():
        h = p["http"]
        rows.append(
            _row(
                f"page {name} p50 (p95){_at_full(results['scale'])}",
                f"{h['p50_ms']:.1f} ({h['p95_ms']:.1f}) ms",
                "",
                "",
                f"≤ {p['limit_ms']:.0f} ms",
                h["p95_ms"] <= p["limit_ms"],
            )
        )
    return rows


def verdicts(results: dict[str, Any]) -> list[dict[str, str]]:
    """Return one row per target of the issue: measured value, raw DuckDB, ratio, met/missed."""
    rows: list[dict[str, str]] = []
    scale = results["scale"]
    if "ingest" in results and "bulk" in results:
        rows += _ingest_rows(results)
    for name, q in results.get("queries", {}).items():
        h, r = q["http"], q["raw"]
        rows.append(
            _row(
                f"{name} p50 (p95)",
                f"{h['p50_ms']:.1f} ({h['p95_ms']:.1f}) ms",
                f"{r['p50_ms']:.1f} ({r['p95_ms']:.1f}) ms",
                _x(q["ratio_p50"]),
                f"≤ {q['limit_p50_ms']:.1f} ms",
                h["p50_ms"] <= q["limit_p50_ms"],
            )
        )
    rows += _report_rows(results)
    rows += _page_rows(results)
    models = results.get("queries", {}).get("models/stats")
    if models:
        rows.append(
            _row(
                f"models/stats p95 at {scale['cases']:,} per-test rows"
                + ("" if scale["cases"] == 1_000_000 else " (target at 1,000,000)"),
                f"{models['http']['p95_ms']:.1f} ms",
                f"{models['raw']['p95_ms']:.1f} ms",
                _x(models["ratio_p95"]),
                f"≤ {MODELS_P95_MS:.0f} ms",
                models["http"]["p95_ms"] <= MODELS_P95_MS,
            )
        )
    export_rss = 0.0
    for name, e in results.get("export", {}).items():
        export_rss = max(export_rss, e["peak_rss_mb"])
        if "raw_copy_s" not in e:
            continue
        rows.append(
            _row(
                f"Export {name}, {e['rows']:,} rows",
                f"{e['http_s']:.2f} s",
                f"{e['raw_copy_s']:.2f} s",
                _x(e["ratio"]),
                f"≤ {EXPORT_FACTOR:.1f}× COPY",
                (e["ratio"] or 0) <= EXPORT_FACTOR,
            )
        )
    if "export" in results:
        rows.append(
            _row(
                "Server peak RSS during export (POST and streamed GET)",
                f"{export_rss:,.0f} MB",
                "",
                "",
                f"≤ {RSS_LIMIT_MB:.0f} MB",
                export_rss <= RSS_LIMIT_MB,
            )
        )
    if "writes" in results:
        w = results["writes"]
        rows.append(
            _row(
                f"Small writes, {w['clients']} clients × {w['seconds']:.0f} s: errors",
                f"{w['errors']} errors, {w['requests_per_s']:,.0f} req/s "
                f"(p95 {w['request']['p95_ms']:.0f} ms)",
                "",
                "",
                "0 errors",
                w["errors"] == 0,
            )
        )
    if "plugin" in results:
        from bench.plugin import verdict_row

        rows.append(_row(*verdict_row(results["plugin"])))
    return rows


# --- issue 14: the write path next to raw DuckDB's naive writes (bench/write_path.py) ---------

WRITES_RPS, WRITES_P95_MS = 1_000.0, 100.0
SMALL_RUNS_PER_S, SINGLE_RUNS_PER_S = 300.0, 100.0
GET_RUN_P50_MS = 5.0
WRITE_PATH_RSS_MB = 400.0


def _rate(figures: dict[str, Any], key: str = "requests_per_s", unit: str = "req/s") -> str:
    p95 = figures.get("request", figures.get("run", {})).get("p95_ms")
    return f"{figures[key]:,.1f} {unit} (p95 {p95:,.0f} ms)"


def _write_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Return the small writes (minimal and full answer) and the HTTP ceiling next to raw."""
    w, full, raw = results["writes_minimal"], results["writes"], results["writes_raw"]
    ceiling = results["writes_ceiling"]
    shape = f"{w['clients']} clients × {results['scale']['write_seconds']:.0f} s"
    rows = [
        _row(
            f"step/progress updates (PUT step, PATCH progress), {shape}, Prefer: return=minimal"
            + _at_full(results["scale"]),
            _rate(w) + f", {w['errors']} errors",
            _rate(raw) + f", {raw['clients']} threads",
            _x(ratio(w["requests_per_s"], raw["requests_per_s"])),
            f"≥ {WRITES_RPS:,.0f} req/s, p95 ≤ {WRITES_P95_MS:.0f} ms, 0 errors",
            w["requests_per_s"] >= WRITES_RPS
            and w["request"]["p95_ms"] <= WRITES_P95_MS
            and w["errors"] == 0,
        ),
        _row(
            f"the same, PATCH answered with the whole run (no Prefer), {shape}",
            _rate(full) + f", {full['errors']} errors",
            _rate(raw),
            _x(ratio(full["requests_per_s"], raw["requests_per_s"])),
            "(no target)",
            None if full["errors"] == 0 else False,
        ),
        _row(
            f"HTTP ceiling: GET {ceiling['path']} (no database), {shape}",
            _rate(ceiling) + f", {ceiling['errors']} errors",
            "",
            "",
            "(what the HTTP stack and client allow here)",
            None if ceiling["errors"] == 0 else False,
        ),
    ]
    return rows


def _run_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Return the whole-run ingest rows (small runs by 16 clients and by 1, large runs)."""
    scale, ing = results["scale"], results["ingest"]
    shape = (
        f"runs of {scale['small_details']} details + {scale['small_metrics']} metrics"
        f" + {scale['small_tags']} tags"
    )
    rows = []
    for key, raw_key, target in (
        ("http_small", "raw_small", SMALL_RUNS_PER_S),
        ("http_small_single", "raw_small_single", SINGLE_RUNS_PER_S),
    ):
        r, minimal = ing[raw_key], ing.get(f"{key}_minimal")
        raw = _rate(r, "runs_per_s", "runs/s") + (
            ", 1 thread" if r["threads"] == 1 else f", {r['threads']} threads"
        )
        for h, answer in ((minimal, "Prefer: return=minimal"), (ing[key], "whole run answered")):
            if h is None:  # a results file from before the minimal variant
                continue
            who = "1 client, one after another" if h["clients"] == 1 else f"{h['clients']} clients"
            judged = h is minimal or minimal is None  # the writes alone carry the target
            rows.append(
                _row(
                    f"{shape}, {who}, {answer}",
                    _rate(h, "runs_per_s", "runs/s"),
                    raw,
                    _x(ratio(h["runs_per_s"], r["runs_per_s"])),
                    f"≥ {target:,.0f} runs/s" if judged else "(no target)",
                    (h["runs_per_s"] >= target and h["errors"] == 0)
                    if judged
                    else (None if h["errors"] == 0 else False),
                )
            )
    large = ing["http_large"]
    raw_large = (results.get("bulk") or {}).get("large") or ing["raw_large"]
    rows.append(
        _row(
            f"runs of {scale['large_details']:,} details, 1 client, Prefer: return=minimal",
            f"{_n(large['rows_per_s'])} rows/s",
            f"{_n(raw_large['raw_rows_per_s'])} rows/s (Arrow INSERT … SELECT)",
            _x(ratio(large["rows_per_s"], raw_large["raw_rows_per_s"])),
            f"≥ {INGEST_TARGET:,} rows/s",
            large["rows_per_s"] >= INGEST_TARGET and large["errors"] == 0,
        )
    )
    g = ing["get_run_small"]
    rows.append(
        _row(
            f"GET /run/{{id}} of a run of {scale['small_details']} tests,"
            f" {scale['runs']:,} runs stored, p50 (p95)"
            + ("" if scale["runs"] >= 100_000 else " (target at 100,000 runs)"),
            f"{g['http']['p50_ms']:.1f} ({g['http']['p95_ms']:.1f}) ms",
            f"{g['raw']['p50_ms']:.1f} ({g['raw']['p95_ms']:.1f}) ms, {g['statements']} statements",
            _x(g["ratio_p50"]),
            f"≤ {GET_RUN_P50_MS:.0f} ms p50",
            g["http"]["p50_ms"] <= GET_RUN_P50_MS,
        )
    )
    return rows


def _peak_rss(figures: Any) -> float:
    """Return the highest `peak_rss_mb` anywhere in a result's figures (0 when none)."""
    if isinstance(figures, dict):
        own = figures.get("peak_rss_mb", 0.0)
        return max([float(own), *(_peak_rss(v) for v in figures.values())])
    return 0.0


def write_path_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Return issue 14's table: each write workload next to raw DuckDB's naive writes."""
    rows: list[dict[str, str]] = []
    if "writes_raw" in results:
        rows += _write_rows(results)
    if "raw_small" in results.get("ingest", {}):
        rows += _run_rows(results)
    keys = ("ingest", "writes", "writes_minimal", "writes_ceiling")
    rss = max((_peak_rss(results[k]) for k in keys if k in results), default=0.0)
    if rows:
        rows.append(
            _row(
                "Server peak RSS during all of the above",
                f"{rss:,.0f} MB",
                "",
                "",
                f"≤ {WRITE_PATH_RSS_MB:.0f} MB",
                rss <= WRITE_PATH_RSS_MB,
            )
        )
    return rows


# --- output ----------------------------------------------------------------------------------


def markdown(results: dict[str, Any], results_file: str) -> str:
    """Return the scale's section of BENCHMARKS.md: context lines and the targets table."""
    s, m, v, d = results["scale"], results["machine"], results["versions"], results["dataset"]
    met = sum(r["result"] == "met" for r in results["targets"])
    missed = sum(r["result"] == "missed" for r in results["targets"])
    lines = [
        f"### `{s['name']}` scale — {results['date']}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GiB. "
        f"Python {v['python']}, duckdb {v['duckdb']}, SQLAlchemy {v['SQLAlchemy']}, "
        f"duckdb-engine {v['duckdb_engine']}, FastAPI {v['fastapi']}, uvicorn {v['uvicorn']}, "
        f"pyarrow {v['pyarrow']}.",
        "",
        f"Data set: {s['runs']:,} runs, {d['rows'].get('test_run_cases', 0):,} per-test rows, "
        f"{d['rows'].get('test_run_metrics', 0):,} metric points, {s['models']:,} models, "
        f"{s['devices']} devices, {s['days']} days; loaded through `app.core.bulk.insert_rows` "
        f"in {d['load_s']:.1f} s ({d['file_mb']} MB). Bench wall time {results['wall_s']:.0f} s.",
        "",
        "| Target | Measured | Raw DuckDB | Ratio | Limit | Result |",
        "|---|---|---|---|---|---|",
        *_table_rows(results["targets"]),
        "",
        f"{met} met, {missed} missed. Every figure: `{results_file}`.",
    ]
    if results.get("write_path"):
        lines += ["", *_write_path_table(results)]
    return "\n".join(lines)


def _table_rows(rows: list[dict[str, str]]) -> list[str]:
    """Return verdict rows as markdown table lines."""
    return [
        f"| {r['target']} | {r['measured']} | {r['raw'] or '—'} | {r['ratio'] or '—'} "
        f"| {r['limit']} | {r['result']} |"
        for r in rows
    ]


def _write_path_table(results: dict[str, Any]) -> list[str]:
    """Return issue 14's table: each write workload, raw DuckDB's naive writes, their ratio."""
    rows = results["write_path"]
    met = sum(r["result"] == "met" for r in rows)
    missed = sum(r["result"] == "missed" for r in rows)
    load = results["machine"].get("load_average_1m_at_start")
    return [
        "#### The write path (issue 14) next to raw DuckDB writing naively",
        "",
        "Raw: one `duckdb` connection in the bench process on a copy of the data set, one"
        " transaction per request or run, one multi-row INSERT per table; concurrent callers"
        " are threads through one lock (bench/write_path.py). Ratio: app / raw."
        + (f" Load average at start: {load}." if load is not None else ""),
        "",
        "| Workload | App | Raw DuckDB, naive | Ratio | Target | Result |",
        "|---|---|---|---|---|---|",
        *_table_rows(rows),
        "",
        f"{met} met, {missed} missed.",
    ]


INTRO = """# Benchmarks

`make bench` (quick, about a minute) or `BENCH_SCALE=full make bench` (the issue's data set:
100,000 runs, 1,000,000 per-test rows, 1,000,000 metric points, 1,000 models, 8 devices,
90 days). Each run writes every figure to `bench/results/<UTC timestamp>.json` and replaces its
scale's section below; the rest of this file is kept. Figures are ratios against raw DuckDB
doing the same work in the same run; absolute times are for context only.
"""


def update_benchmarks_md(path: Path, scale: str, section: str) -> None:
    """Replace the scale's marked section of BENCHMARKS.md (add it when missing)."""
    begin, end = f"<!-- bench:{scale}:begin -->", f"<!-- bench:{scale}:end -->"
    block = f"{begin}\n{section}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else INTRO
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def write_json(results: dict[str, Any], folder: Path, stamp: str) -> Path:
    """Write the results file `<folder>/<stamp>.json`; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def log(message: str) -> None:
    """Print a progress line to stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
