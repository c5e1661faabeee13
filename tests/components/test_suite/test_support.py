"""The Test Suite tests' own oracles: the independent percentile and the JUnit reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.components.test_suite.support import parse_junit, percentile


def test_percentile_interpolates_between_neighbours() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0, 0.0, 20.0], 0.95) == pytest.approx(19.0)


def test_parse_junit_sums_suites_and_derives_passed(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    report.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites>'
        '<testsuite name="a" tests="5" failures="1" errors="1" skipped="1"/>'
        '<testsuite name="b" tests="2" failures="0" errors="0" skipped="1"/>'
        "</testsuites>"
    )

    assert parse_junit(report) == {
        "tests": 7,
        "failures": 1,
        "errors": 1,
        "skipped": 2,
        "passed": 3,
    }
