"""JUnit import bench: `python -m bench.junit [--cases N] [--reps R]`.

Writes one pytest-dialect JUnit file of N testcases (2 % failures with a traceback, 3 % skips),
then times (a) the parser alone and (b) `POST /api/test/db/import/junit` on a real uvicorn
server, which parses, validates and writes the run through the same bulk path as
`POST /runs` (`store.replace_cases`: an Arrow insert on DuckDB). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.components.test_suite import junit
from bench.report import log
from bench.scales import SEED
from bench.server import RssSampler, Server

TRACEBACK = """self = <tests.models.test_model_{m}.TestModel object at 0x7f3a2c1d>

    def test_forward(self):
        out = self.model(self.inputs)
>       assert out.shape == (2, 768)
E       AssertionError: assert (2, 512) == (2, 768)

tests/models/test_model_{m}.py:42: AssertionError"""


def junit_file(path: Path, cases: int) -> int:
    """Write a pytest-style JUnit XML file of `cases` testcases; return its size in bytes."""
    rng = random.Random(f"{SEED}-junit")
    parts = [
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">',
        f'<testsuite name="pytest" tests="{cases}" time="{cases * 0.01:.3f}" '
        'timestamp="2026-11-30T10:00:00.000000+00:00" hostname="ci">',
    ]
    for i in range(cases):
        module = f"tests.models.test_model_{i // 500:04d}"
        name = f"test_case_{i % 500}[p{i % 7}]"
        head = f'<testcase classname="{module}.TestModel" name="{name}" time="{rng.random():.4f}"'
        roll = rng.random()
        if roll < 0.02:
            text = TRACEBACK.format(m=i // 500).replace("<", "&lt;").replace(">", "&gt;")
            parts.append(
                f'{head}><failure message="AssertionError: shape">{text}</failure></testcase>'
            )
        elif roll < 0.05:
            parts.append(f'{head}><skipped type="pytest.skip" message="needs cuda" /></testcase>')
        else:
            parts.append(f"{head} />")
    parts.append("</testsuite></testsuites>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path.stat().st_size


def measure(cases: int, reps: int, work: Path) -> dict[str, Any]:
    """Time the parser and the HTTP import of one file of `cases` testcases."""
    xml = work / "junit.xml"
    size = junit_file(xml, cases)
    data = xml.read_bytes()
    log(f"wrote {xml} ({size / 1e6:.1f} MB, {cases:,} testcases)")
    parse_s = []
    for _ in range(reps):
        began = time.perf_counter()
        suites = junit.parse(data, source=xml.name)
        parse_s.append(time.perf_counter() - began)
    assert len(suites[0].cases) == cases
    served = work / "server"
    served.mkdir()
    server = Server(served, served / "test_runs.duckdb")
    http_s = []
    try:
        server.start()
        with RssSampler(server.pid) as sampler, httpx.Client(timeout=600) as client:
            for k in range(reps):
                began = time.perf_counter()
                response = client.post(
                    f"{server.url}/api/test/db/import/junit",
                    params={"model_name": "bench-junit", "run_id": f"junit-{k}"},
                    content=data,
                    headers={"Content-Type": "application/xml"},
                )
                http_s.append(time.perf_counter() - began)
                assert response.status_code == 201, response.text[:500]
                assert response.json()["cases"] == cases
            peak = round(sampler.peak(), 1)
    finally:
        server.stop()
    return {
        "cases": cases,
        "file_mb": round(size / 1e6, 2),
        "parse_s": [round(s, 3) for s in parse_s],
        "http_import_s": [round(s, 3) for s in http_s],
        "cases_per_s_http_best": round(cases / min(http_s)),
        "server_peak_rss_mb": peak,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the JUnit import bench once and print its figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.junit", description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-junit-"))
    try:
        print(json.dumps(measure(args.cases, args.reps, work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
