"""pytest plugin: hardware and model-source options, test-type markers, run tracking."""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from app.core.naming import metric_unit

if TYPE_CHECKING:
    import httpx

TEST_TYPE_MARKERS = ("basic", "comprehensive", "fault_tolerance")

# Which markers each --tracking-test-type keeps.
TEST_TYPE_SELECTION: dict[str, frozenset[str]] = {
    "basic": frozenset({"basic"}),
    "comprehensive": frozenset({"basic", "comprehensive"}),
    "fault_tolerance": frozenset({"basic", "fault_tolerance"}),
}

# Outcomes that count as a completed step (the test ran as its author intended).
COMPLETED_OUTCOMES = frozenset({"passed", "skipped", "xfailed", "xpassed"})

ERROR_TEXT_LIMIT = 2000
RECORDER_PLUGIN_NAME = "accelerate-tracking-recorder"
HTTP_TIMEOUT_S = 5.0
HTTP_CONNECT_TIMEOUT_S = 2.0


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the options generated suites and the runner rely on."""
    group = parser.getgroup("accelerate-tracking")
    group.addoption("--hardware", default="cpu", help="device the suite runs on (cpu, cuda, ...)")
    group.addoption(
        "--model-source",
        default="auto",
        choices=("auto", "hub", "tiny"),
        help="load the hub model, or build a tiny random one (auto: tiny when offline)",
    )
    group.addoption(
        "--tracking-test-type",
        default=None,
        choices=tuple(TEST_TYPE_SELECTION),
        help="run only the tests marked for this test type (suites without markers run whole)",
    )
    group.addoption(
        "--tracking-events",
        default=None,
        metavar="PATH",
        help="append one JSON event per line to PATH (collected, test_started, ...)",
    )
    group.addoption(
        "--tracking-url",
        default=None,
        metavar="URL",
        help="record this session as a run on an Accelerate Tracking server",
    )
    group.addoption("--tracking-model", default=None, metavar="NAME", help="model of the run")
    group.addoption("--tracking-batch", default=None, metavar="ID", help="batch to add the run to")
    group.addoption(
        "--tracking-tag",
        action="append",
        default=[],
        metavar="K=V",
        help="tag the run (repeatable)",
    )
    group.addoption(
        "--tracking-run-id", default=None, metavar="ID", help="run id (default: a new uuid4)"
    )
    group.addoption(
        "--tracking-api-key", default=None, metavar="KEY", help="sent as the X-API-Key header"
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the test-type markers, and the tracker when a tracking option is given."""
    config.addinivalue_line("markers", "basic: quick checks every run does")
    config.addinivalue_line("markers", "comprehensive: the full suite (includes basic)")
    config.addinivalue_line("markers", "fault_tolerance: error handling and cleanup checks")
    # xdist workers forward their reports to the controller, which does the tracking.
    if hasattr(config, "workerinput"):
        return
    sinks: list[_Sink] = []
    events_path = config.getoption("tracking_events")
    if events_path:
        sinks.append(_EventsFile(Path(events_path)))
    url = config.getoption("tracking_url")
    if url:
        sinks.append(_recorder_from_options(config, str(url)))
    if sinks:
        config.pluginmanager.register(_Tracker(config, sinks), RECORDER_PLUGIN_NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the tracker's sinks."""
    tracker = config.pluginmanager.get_plugin(RECORDER_PLUGIN_NAME)
    if isinstance(tracker, _Tracker):
        tracker.close()
        config.pluginmanager.unregister(tracker)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only the tests of --tracking-test-type, unless no test carries a type marker."""
    test_type = config.getoption("tracking_test_type")
    if not test_type:
        return
    marked = [{m for m in TEST_TYPE_MARKERS if item.get_closest_marker(m)} for item in items]
    if not any(marked):
        return
    wanted = TEST_TYPE_SELECTION[str(test_type)]
    selected: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item, markers in zip(items, marked, strict=True):
        (selected if markers & wanted else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.fixture
def hardware(request: pytest.FixtureRequest) -> str:
    """Return the device this session runs on."""
    return str(request.config.getoption("--hardware"))


@pytest.fixture
def model_source(request: pytest.FixtureRequest) -> str:
    """Return "hub" or "tiny": where the suite loads its model from."""
    source = str(request.config.getoption("--model-source"))
    if source != "auto":
        return source
    offline = (
        os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    )
    return "tiny" if offline or os.environ.get("APP_MODEL_SOURCE") != "hub" else "hub"


def step_name_for(name: str, hardware: str) -> str:
    """Return the step name of one test on one device (unique within a run)."""
    return f"{name} @ {hardware}"


def _now() -> str:
    """Return the current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat()


def _shorten(text: str | None) -> str | None:
    """Return text cut to ERROR_TEXT_LIMIT characters (None stays None)."""
    if text is None:
        return None
    text = text.strip()
    if len(text) <= ERROR_TEXT_LIMIT:
        return text
    return text[: ERROR_TEXT_LIMIT - 15] + " ... [truncated]"


def _report_text(report: pytest.TestReport | pytest.CollectReport) -> str:
    """Return the crash message of a failed report, or its whole long representation."""
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if message:
        return str(message)
    return report.longreprtext


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """Return the reason a report was skipped."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return report.longreprtext


def _numeric_properties(report: pytest.TestReport) -> dict[str, float]:
    """Return the numeric `record_property` values of a test."""
    properties: dict[str, float] = {}
    for name, value in report.user_properties:
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            properties[str(name)] = value
    return properties


@dataclass
class _TestRecord:
    """What the tracker gathers about one test between its start and finish."""

    nodeid: str
    started_at: str
    reports: list[pytest.TestReport] = field(default_factory=list)


def _outcome(reports: list[pytest.TestReport]) -> tuple[str, str | None]:
    """Return (status, error text) of a test from its setup/call/teardown reports."""
    status, error = "passed", None
    for report in reports:
        xfail_reason = getattr(report, "wasxfail", None)
        if report.when == "call":
            if report.passed:
                status, error = ("xpassed" if xfail_reason is not None else "passed"), None
            elif report.skipped:
                if xfail_reason is not None:
                    status, error = "xfailed", xfail_reason or _report_text(report)
                else:
                    status, error = "skipped", _skip_reason(report)
            else:
                status, error = "failed", _report_text(report)
        elif report.skipped:
            # Skipped in setup (skip marker, skipif, pytest.skip in a fixture) or xfail in setup.
            if xfail_reason is not None:
                status, error = "xfailed", xfail_reason or _report_text(report)
            else:
                status, error = "skipped", _skip_reason(report)
        elif report.failed:
            if report.when == "setup":
                status, error = "error", f"setup: {_report_text(report)}"
            elif status not in ("failed", "error"):
                # A teardown error after a passing call makes the test an error; after a
                # failing call or setup error the first problem stays the headline.
                status, error = "error", f"teardown: {_report_text(report)}"
    return status, _shorten(error)


class _Sink:
    """Receiver of the tracker's events."""

    def emit(self, event: dict[str, Any]) -> None:
        """Handle one event."""

    def summary(self) -> str | None:
        """Return a line for the terminal summary, if there is something to say."""
        return None

    def close(self) -> None:
        """Release what the sink holds."""


class _EventsFile(_Sink):
    """Append events as JSON lines to a file, flushing each line."""

    KINDS = frozenset({"collected", "test_started", "test_finished", "session_finished"})

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = path.open("a", encoding="utf-8")

    def emit(self, event: dict[str, Any]) -> None:
        """Write one event as a line and flush it."""
        if self._file is None or event["event"] not in self.KINDS:
            return
        self._file.write(json.dumps(event, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


class _HttpRecorder(_Sink):
    """Record the session as a run through the server's recording API."""

    def __init__(
        self,
        url: str,
        *,
        run_id: str,
        model_name: str,
        hardware: str,
        test_type: str,
        tags: dict[str, str],
        batch_id: str | None,
        api_key: str | None,
    ) -> None:
        self.url = url.rstrip("/")
        self.run_id = run_id
        self.model_name = model_name
        self.hardware = hardware
        self.test_type = test_type
        self.tags = tags
        self.batch_id = batch_id
        self.api_key = api_key
        self.collected = 0
        self.finished = 0
        self.sent = 0
        self.failed = 0
        self.first_error: str | None = None
        self.disabled = False
        self._client: httpx.Client | None = None

    def _run_path(self, suffix: str = "") -> str:
        """Return the URL of this run's resource, with an optional sub-path."""
        return f"{self.url}/api/test/db/run/{quote(self.run_id, safe='')}{suffix}"

    def _request(self, method: str, url: str, body: Any) -> bool:
        """Send one request; on failure remember why, and give up on connection errors."""
        if self.disabled:
            self.failed += 1
            return False
        import httpx

        try:
            if self._client is None:
                headers = {"X-API-Key": self.api_key} if self.api_key else {}
                self._client = httpx.Client(
                    headers=headers,
                    timeout=httpx.Timeout(HTTP_TIMEOUT_S, connect=HTTP_CONNECT_TIMEOUT_S),
                )
            response = self._client.request(method, url, json=body)
        except httpx.HTTPError as exc:
            # The server is unreachable: stop waiting on timeouts for every test.
            self.disabled = True
            self._fail(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return False
        except Exception as exc:  # never let recording break the test session
            self._fail(f"{type(exc).__name__}: {exc}")
            return False
        if response.is_error:
            detail = response.text.strip().replace("\n", " ")[:200]
            answer = f"{method} {url} answered {response.status_code}"
            self._fail(f"{answer}: {detail}" if detail else answer)
            return False
        self.sent += 1
        return True

    def _fail(self, reason: str) -> None:
        """Count a request that could not be recorded."""
        self.failed += 1
        if self.first_error is None:
            self.first_error = reason

    def emit(self, event: dict[str, Any]) -> None:
        """Translate one event into recording API calls."""
        kind = event["event"]
        if kind == "session_started":
            body: dict[str, Any] = {
                "run_id": self.run_id,
                "model_name": self.model_name,
                "hardware": [self.hardware],
                "test_type": self.test_type,
                "status": "running",
                "started_at": event["started_at"],
                "tags": self.tags,
            }
            if self.batch_id:
                body["batch_id"] = self.batch_id
            if not self._request("POST", f"{self.url}/api/test/db/runs", body):
                # Without the run every later update would fail too.
                self.disabled = True
        elif kind == "collected":
            self.collected = int(event["count"])
            self._request(
                "PATCH",
                self._run_path(),
                {"progress": 0.0, "current_step": f"collected {self.collected} tests"},
            )
        elif kind == "test_finished":
            self._record_test(event)
        elif kind == "session_finished":
            exitstatus = int(event["exitstatus"])
            body = {"status": "completed", "completed_at": event["finished_at"]}
            if exitstatus not in (0, 1, 5):
                # Interrupted, internal error or usage error: the session did not finish.
                body |= {"status": "error", "error": f"pytest ended with exit status {exitstatus}"}
            self._request("POST", self._run_path("/complete"), body)

    def _record_test(self, event: dict[str, Any]) -> None:
        """Record one finished test as a step, a case, its metrics and the run's progress."""
        self.finished += 1
        name = str(event["name"])
        status = str(event["status"])
        step = quote(step_name_for(name, self.hardware), safe="")
        self._request(
            "PUT",
            self._run_path(f"/steps/{step}"),
            {
                "status": "completed" if status in COMPLETED_OUTCOMES else "error",
                "progress": 1.0,
                "started_at": event["started_at"],
                "completed_at": event["finished_at"],
                "duration": event["duration_ms"] / 1000.0,
                "error": event["error"],
            },
        )
        case = {
            "name": name,
            "status": status,
            "duration_ms": event["duration_ms"],
            "error": event["error"],
            "hardware": self.hardware,
        }
        self._request("POST", self._run_path("/cases"), [case])
        properties: dict[str, float] = event.get("properties") or {}
        if properties:
            metrics = [
                {
                    "name": metric,
                    "value": value,
                    "unit": metric_unit(metric),
                    "hardware": self.hardware,
                    "timestamp": event["finished_at"],
                }
                for metric, value in properties.items()
            ]
            self._request("POST", self._run_path("/metrics"), metrics)
        total = max(self.collected, self.finished)
        self._request(
            "PATCH",
            self._run_path(),
            {"progress": round(self.finished / total, 4) if total else 1.0, "current_step": name},
        )

    def summary(self) -> str | None:
        """Return the one line saying where the run went, or what could not be recorded."""
        if self.failed:
            return (
                f"accelerate-tracking: could not record run {self.run_id} at {self.url}: "
                f"{self.first_error}; {self.failed} updates not recorded"
            )
        return f"accelerate-tracking: recorded run {self.run_id} at {self.url}"

    def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            self._client.close()
            self._client = None


def _recorder_from_options(config: pytest.Config, url: str) -> _HttpRecorder:
    """Build the HTTP recorder from the command line, or fail with a usage error."""
    model = config.getoption("tracking_model")
    if not model:
        raise pytest.UsageError("--tracking-url needs --tracking-model NAME")
    if not url.startswith(("http://", "https://")):
        raise pytest.UsageError(f"--tracking-url must be an http(s) URL, got {url!r}")
    tags: dict[str, str] = {}
    for tag in config.getoption("tracking_tag") or []:
        key, sep, value = str(tag).partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"--tracking-tag takes K=V, got {tag!r}")
        tags[key.strip()] = value
    return _HttpRecorder(
        url,
        run_id=str(config.getoption("tracking_run_id") or uuid.uuid4().hex),
        model_name=str(model),
        hardware=str(config.getoption("hardware")),
        test_type=str(config.getoption("tracking_test_type") or "comprehensive"),
        tags=tags,
        batch_id=config.getoption("tracking_batch") or None,
        api_key=config.getoption("tracking_api_key") or None,
    )


class _Tracker:
    """Turn the session's hooks into events and hand them to the sinks."""

    def __init__(self, config: pytest.Config, sinks: list[_Sink]) -> None:
        self.config = config
        self.sinks = sinks
        self.hardware = str(config.getoption("hardware"))
        self.multi_file = False
        self.tests: dict[str, _TestRecord] = {}
        self.collect_problems: list[pytest.CollectReport] = []

    def _emit(self, event: dict[str, Any]) -> None:
        """Send an event to every sink; a failing sink never fails the session."""
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception as exc:
                if isinstance(sink, _HttpRecorder):
                    sink._fail(f"{type(exc).__name__}: {exc}")

    def name_of(self, nodeid: str) -> str:
        """Return a test's name: its node id without the file, unless several files ran."""
        if self.multi_file:
            return nodeid
        file_part, sep, rest = nodeid.partition("::")
        return rest if sep else Path(file_part).name

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Announce the session (the HTTP recorder creates the run)."""
        self._emit({"event": "session_started", "started_at": _now()})

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Keep collection errors and skipped modules: they are reported as tests."""
        if not report.passed:
            self.collect_problems.append(report)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Emit the tests that will run (after deselection), then collection problems."""
        files = {item.nodeid.partition("::")[0] for item in session.items}
        files |= {report.nodeid.partition("::")[0] for report in self.collect_problems}
        self.multi_file = len(files) > 1
        names = [self.name_of(item.nodeid) for item in session.items]
        names += [self.name_of(report.nodeid) for report in self.collect_problems]
        self._emit({"event": "collected", "count": len(names), "tests": names})
        for report in self.collect_problems:
            now = _now()
            if report.failed:
                status, error = "error", f"collection: {_report_text(report)}"
            else:
                status, error = "skipped", _skip_reason(report)
            self._emit(
                {
                    "event": "test_finished",
                    "name": self.name_of(report.nodeid),
                    "nodeid": report.nodeid,
                    "status": status,
                    "duration_ms": 0.0,
                    "error": _shorten(error),
                    "hardware": self.hardware,
                    "properties": {},
                    "started_at": now,
                    "finished_at": now,
                    "when": "collect",
                }
            )

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        """Emit test_started."""
        self.tests[nodeid] = _TestRecord(nodeid=nodeid, started_at=_now())
        self._emit({"event": "test_started", "name": self.name_of(nodeid), "nodeid": nodeid})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep each phase's report until the test finishes."""
        record = self.tests.get(report.nodeid)
        if record is None:
            record = self.tests[report.nodeid] = _TestRecord(report.nodeid, _now())
        record.reports.append(report)

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        """Emit test_finished with the test's one outcome."""
        record = self.tests.pop(nodeid, None)
        if record is None or not record.reports:
            return
        status, error = _outcome(record.reports)
        properties = _numeric_properties(record.reports[-1])
        duration_ms = sum(report.duration for report in record.reports) * 1000.0
        self._emit(
            {
                "event": "test_finished",
                "name": self.name_of(nodeid),
                "nodeid": nodeid,
                "status": status,
                "duration_ms": round(duration_ms, 3),
                "error": error,
                "hardware": self.hardware,
                "properties": properties,
                "started_at": record.started_at,
                "finished_at": _now(),
            }
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Emit session_finished (the HTTP recorder completes the run)."""
        self._emit(
            {"event": "session_finished", "exitstatus": int(exitstatus), "finished_at": _now()}
        )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Print one line per sink with something to say (where the run was recorded)."""
        for sink in self.sinks:
            line = sink.summary()
            if line:
                terminalreporter.write_line(line)
