"""The JUnit import bench runs end to end at a small size and reports its figures."""

from __future__ import annotations

from pathlib import Path

from app.components.test_suite.junit import parse
from bench.junit import junit_file, measure


def test_bench_file_is_valid_junit_with_the_asked_size(tmp_path: Path) -> None:
    path = tmp_path / "j.xml"
    junit_file(path, 1_000)
    (suite,) = parse(path.read_bytes())
    assert len(suite.cases) == 1_000
    assert {c.status for c in suite.cases} == {"passed", "failed", "skipped"}
    assert suite.cases[0].name.startswith("tests/models/test_model_0000.py::TestModel::")


def test_bench_junit_measures_parse_and_http(tmp_path: Path) -> None:
    figures = measure(500, 1, tmp_path)
    assert figures["cases"] == 500
    assert len(figures["parse_s"]) == len(figures["http_import_s"]) == 1
    assert figures["cases_per_s_http_best"] > 0
