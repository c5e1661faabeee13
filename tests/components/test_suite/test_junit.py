"""JUnit XML import: every CI dialect with the right counts, hostile and bad files refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.components.test_suite import junit, junit_router
from app.components.test_suite.junit import case_id, parse
from tests.components.test_suite.support import B, app_table_counts

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "junit"
URL = f"{B}/import/junit"
XML = {"Content-Type": "application/xml"}

# file -> (passed, failed, skipped) as the run's counters see them (errors count as failed,
# xfail as skipped), and the number of runs with per_suite=true.
EXPECTED = {
    "pytest.xml": ((2, 3, 2), 1),
    "surefire.xml": ((2, 2, 1), 1),
    "gradle.xml": ((2, 1, 1), 1),
    "jest.xml": ((4, 1, 1), 2),
    "go-junit-report.xml": ((3, 1, 1), 2),
    "gotestsum.xml": ((2, 1, 1), 1),
    "dotnet.xml": ((2, 1, 1), 1),
    "phpunit.xml": ((2, 2, 1), 1),
    "nested.xml": ((3, 1, 1), 2),
}


def _post(client: TestClient, name: str, **params: Any) -> Any:
    data = (FIXTURES / name).read_bytes()
    return client.post(URL, content=data, headers=XML, params={"model_name": "m", **params})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_dialect_imports_with_the_right_counts(client: TestClient, name: str) -> None:
    (passed, failed, skipped), n_suites = EXPECTED[name]
    response = _post(client, name, hardware="cuda", tags=["branch=main", "ci=gh"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["runs"]) == 1
    run = body["runs"][0]
    assert (run["tests_passed"], run["tests_failed"], run["tests_skipped"]) == (
        passed,
        failed,
        skipped,
    )
    assert body["cases"] == passed + failed + skipped
    detail = client.get(f"{B}/run/{run['run_id']}").json()
    assert detail["hardware"] == ["cuda"]
    assert detail["tags"] == {"branch": "main", "ci": "gh"}
    assert detail["status"] == "completed"
    assert len(detail["results"]["test_details"]) == passed + failed + skipped
    per_suite = _post(client, name, per_suite="true").json()
    assert len(per_suite["runs"]) == n_suites
    assert sum(r["tests_failed"] for r in per_suite["runs"]) == failed


def test_pytest_classnames_become_node_ids_and_keep_full_error_text(client: TestClient) -> None:
    run_id = _post(client, "pytest.xml", run_id="ci-1").json()["runs"][0]["run_id"]
    assert run_id == "ci-1"
    cases = {c["name"]: c for c in client.get(f"{B}/run/ci-1").json()["results"]["test_details"]}
    assert sorted(cases) == [
        "tests/sub/test_deep.py::test_x",
        "tests/test_io.py::test_fixture",
        "tests/test_io.py::test_known_bug",
        "tests/test_io.py::test_read",
        "tests/test_math.py::TestDiv::test_div[1-2]",
        "tests/test_math.py::TestDiv::test_div_zero",
        "tests/test_math.py::test_add",
    ]
    failed = cases["tests/test_math.py::TestDiv::test_div_zero"]
    assert failed["status"] == "failed"
    assert failed["duration_ms"] == pytest.approx(3.0)
    assert failed["error"].startswith("ZeroDivisionError: division by zero\n")
    assert "tests/test_math.py:12: ZeroDivisionError" in failed["error"]
    assert cases["tests/test_io.py::test_known_bug"]["status"] == "xfailed"
    assert cases["tests/test_io.py::test_fixture"]["status"] == "error"
    assert cases["tests/test_io.py::test_read"]["error"].startswith("no network")
    run = client.get(f"{B}/run/ci-1").json()
    assert run["started_at"].startswith("2026-11-30T10:00:00.123456")
    assert run["duration"] == pytest.approx(1.234)


def test_other_dialects_keep_classname_and_name(client: TestClient) -> None:
    run_id = _post(client, "surefire.xml").json()["runs"][0]["run_id"]
    run = client.get(f"{B}/run/{run_id}").json()
    names = [c["name"] for c in run["results"]["test_details"]]
    assert names[0] == "com.example.CalculatorTest::testAdd"
    statuses = {c["name"].split("::")[1]: c["status"] for c in run["results"]["test_details"]}
    assert statuses == {
        "testAdd": "passed",
        "testSubtract": "passed",  # a flaky failure that passed on rerun
        "testDivide": "failed",
        "testNull": "error",
        "testPower": "skipped",
    }
    # numeric properties are metrics; the rest stay with the results
    assert {(m["name"], m["value"]) for m in run["metrics"]} == {
        ("java.specification.version", 17.0),
        ("sun.arch.data.model", 64.0),
    }
    assert run["results"]["junit"]["properties"]["os.name"] == "Linux"


def test_nested_suites_and_root_properties(client: TestClient) -> None:
    runs = _post(client, "nested.xml", per_suite="true").json()["runs"]
    assert [r["suite"] for r in runs] == ["backend", "frontend"]
    backend = client.get(f"{B}/run/{runs[0]['run_id']}").json()
    assert {m["name"]: m["value"] for m in backend["metrics"]} == {
        "build.number": 1234.0,
        "gpu.memory_mb": 40960.0,
    }


def test_multipart_imports_several_files_in_one_batch(client: TestClient) -> None:
    files = [
        ("files", (name, (FIXTURES / name).read_bytes(), "application/xml"))
        for name in ("jest.xml", "dotnet.xml", "go-junit-report.xml")
    ]
    response = client.post(URL, files=files, params={"model_name": "m", "batch_id": "nightly-1"})
    assert response.status_code == 201, response.text
    assert [r["source"] for r in response.json()["runs"]] == [
        "jest.xml",
        "dotnet.xml",
        "go-junit-report.xml",
    ]
    batch = client.get(f"{B}/batch/nightly-1").json()
    assert batch["run_count"] == 3


HOSTILE = {
    "billion laughs": b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<testsuite name="x"><testcase name="&lol3;"/></testsuite>""",
    "external entity": b"""<?xml version="1.0"?>
<!DOCTYPE t [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<testsuite name="x"><testcase name="a"><failure>&xxe;</failure></testcase></testsuite>""",
    "external dtd": b"""<?xml version="1.0"?>
<!DOCTYPE testsuite SYSTEM "http://example.invalid/junit.dtd">
<testsuite name="x"><testcase name="a"/></testsuite>""",
    "parameter entity": b"""<?xml version="1.0"?>
<!DOCTYPE t [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>
<testsuite name="x"/>""",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_files_are_refused_and_nothing_is_written(client: TestClient, kind: str) -> None:
    before = app_table_counts(client)
    response = client.post(URL, content=HOSTILE[kind], headers=XML, params={"model_name": "m"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_junit"
    assert "not allowed" in response.json()["detail"]
    assert "root:" not in response.text
    assert app_table_counts(client) == before


BAD = [
    (b"<testsuite><testcase name='a'></testsuite>", "mismatched tag (line 1, column"),
    (b"<testsuite>\n  <testcase name='a' time='fast'/>\n</testsuite>", "line 2, column 3"),
    (b"<report><testcase name='a'/></report>", "root element must be"),
    (b"<testsuite><testcase classname='c'/></testsuite>", "without a name"),
    (b"<testsuite timestamp='yesterday'/>", "ISO 8601"),
    (b"<testsuite><testcase name='a' time='-1'/></testsuite>", ">= 0"),
    (b"<testsuite><testcase name='a' time='nan'/></testsuite>", "finite"),
    (b"", "not well-formed"),
    (b"not xml at all", "not well-formed"),
    (b"<testsuite><testcase name='" + b"x" * 1100 + b"'/></testsuite>", "longer than 1024"),
]


@pytest.mark.parametrize(("data", "why"), BAD)
def test_bad_files_get_400_with_what_and_where(client: TestClient, data: bytes, why: str) -> None:
    response = client.post(URL, content=data, headers=XML, params={"model_name": "m"})
    assert response.status_code == 400, response.text
    assert why in response.json()["detail"]
    assert app_table_counts(client)["test_runs"] == 0


def test_one_bad_file_in_an_upload_writes_nothing(client: TestClient) -> None:
    files = [
        ("files", ("good.xml", (FIXTURES / "jest.xml").read_bytes(), "application/xml")),
        ("files", ("bad.xml", b"<testsuite><testcase name='a'>", "application/xml")),
    ]
    response = client.post(URL, files=files, params={"model_name": "m"})
    assert response.status_code == 400
    assert "bad.xml" in response.json()["detail"]
    assert app_table_counts(client)["test_runs"] == 0


def test_parameters_are_validated(client: TestClient) -> None:
    data = (FIXTURES / "jest.xml").read_bytes()
    cases = [
        ({}, 422),
        ({"model_name": "m", "tags": "novalue"}, 422),
        ({"model_name": "m", "hardware": "not a device"}, 422),
        ({"model_name": "m", "unknown": "1"}, 422),
        ({"model_name": "m", "run_id": "one", "per_suite": "true"}, 400),  # two runs, one id
    ]
    for params, status in cases:
        response = client.post(URL, content=data, headers=XML, params=params)
        assert response.status_code == status, (params, response.text)
    wrong_type = client.post(
        URL, json={"a": 1}, params={"model_name": "m"}, headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    assert app_table_counts(client)["test_runs"] == 0


def test_size_limits_are_enforced(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    data = (FIXTURES / "pytest.xml").read_bytes()
    monkeypatch.setattr(junit_router, "MAX_UPLOAD_BYTES", 1000)
    too_big = client.post(URL, content=data, headers=XML, params={"model_name": "m"})
    assert too_big.status_code == 413
    monkeypatch.setattr(junit_router, "MAX_UPLOAD_BYTES", 10_000_000)
    monkeypatch.setattr(junit, "MAX_CASES", 3)
    many = client.post(URL, content=data, headers=XML, params={"model_name": "m"})
    assert many.status_code == 400
    assert "more than 3 test cases" in many.json()["detail"]
    assert app_table_counts(client)["test_runs"] == 0


def test_reimport_with_the_same_run_id_replaces_the_cases(client: TestClient) -> None:
    assert _post(client, "jest.xml", run_id="r").status_code == 201
    assert _post(client, "dotnet.xml", run_id="r").status_code == 201
    run = client.get(f"{B}/run/r").json()
    assert len(run["results"]["test_details"]) == 4
    assert app_table_counts(client)["test_runs"] == 1


def test_long_error_text_is_clipped_at_the_documented_limit() -> None:
    text = "E" * (junit.MAX_ERROR_CHARS * 2)
    xml = f"<testsuite><testcase name='a'><failure message='m'>{text}</failure></testcase>"
    xml += "</testsuite>"
    (case,) = parse(xml.encode())[0].cases
    assert case.error is not None
    assert len(case.error) == junit.MAX_ERROR_CHARS
    assert case.error.endswith("[... truncated]")


def test_case_id_shapes() -> None:
    assert case_id("tests.unit.test_a.TestX", "test_y[1]", pytest=True) == (
        "tests/unit/test_a.py::TestX::test_y[1]"
    )
    assert case_id("test_a", "test_b", pytest=True) == "test_a.py::test_b"
    assert case_id("pkg.checks", "test_b", pytest=True) == "pkg.checks::test_b"
    assert case_id("com.x.FooTest", "testBar", pytest=False) == "com.x.FooTest::testBar"
    assert case_id("", "alone", pytest=False) == "alone"


def test_cli_posts_files_to_a_server(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.components.test_suite import junit_cli

    code = junit_cli.upload(
        [FIXTURES / "jest.xml", FIXTURES / "gradle.xml"],
        model_name="m",
        hardware=["cuda"],
        tags=["branch=main"],
        url="http://testserver",
        transport_client=client,
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "imported 2 runs, 10 cases" in out
    runs = client.get(f"{B}/runs").json()
    assert len(runs) == 2
    assert all(r["hardware"] == ["cuda"] for r in runs)


def test_cli_subcommand_reports_an_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    from app.__main__ import main
    from tests.support import free_port

    url = f"http://127.0.0.1:{free_port()}"
    code = main(["import-junit", str(FIXTURES / "jest.xml"), "--model", "m", "--url", url])
    assert code == 2
    assert f"cannot reach {url}" in capsys.readouterr().err
