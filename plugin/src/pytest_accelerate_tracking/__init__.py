"""pytest plugin: record a session as a run on an Accelerate Tracking server, never slowing it.

Inert unless `--tracking-url` or `--tracking-events` is given. Also provides the options and
fixtures the suites Accelerate Tracking generates rely on (`hardware`, `model_source`).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest

from pytest_accelerate_tracking.journal import (
    JournalCase,
    JournalWriter,
    read_journal,
    run_document,
    run_tail,
    spool_or_lost,
)

__all__ = ["ERROR_TEXT_LIMIT", "NAME_LIMIT", "case_name", "metric_unit", "shorten_error"]

TEST_TYPE_MARKERS = ("basic", "comprehensive", "fault_tolerance")

# Which markers each --tracking-test-type keeps.
TEST_TYPE_SELECTION: dict[str, frozenset[str]] = {
    "basic": frozenset({"basic"}),
    "comprehensive": frozenset({"basic", "comprehensive"}),
    "fault_tolerance": frozenset({"basic", "fault_tolerance"}),
}

# A case keeps its error text (the whole traceback) up to 64 KiB: within the server's
# 100,000-character bound on `error`; longer text keeps its start and its end.
ERROR_TEXT_LIMIT = 64 * 1024
# The server bounds case names to 1,024 characters; a longer node id is cut and made unique
# with a hash of the whole id.
NAME_LIMIT = 1024
RECORDER_PLUGIN_NAME = "accelerate-tracking-recorder"
DEFAULT_FLUSH_TIMEOUT_S = 10.0
# Beyond the flush timeout, how long the test process waits for the sender process to answer
# (it may still be starting, or reading the journal's last lines) before spooling by itself.
RELAY_GRACE_S = 5.0
RELAY_BOOT = (
    "import sys; sys.path.append(sys.argv.pop(1)); "
    "from pytest_accelerate_tracking.relay import main; raise SystemExit(main(sys.argv[1:]))"
)
SPOOL_NAME = "spool.jsonl"

_UNIT_SUFFIXES = (
    ("_ms", "ms"),
    ("_per_sec", "items/s"),
    ("_per_second", "items/s"),
    ("_per_s", "items/s"),
    ("_mb", "MB"),
    ("_gb", "GB"),
    ("_bytes", "B"),
    ("_s", "s"),
    ("_seconds", "s"),
    ("_sec", "s"),
    ("_pct", "%"),
)


def metric_unit(name: str) -> str:
    """Guess a metric's unit from its name (`latency_ms` → ms, `memory_mb` → MB, ...)."""
    lowered = name.lower()
    for suffix, unit in _UNIT_SUFFIXES:
        if lowered.endswith(suffix):
            return unit
    return "ms" if "latency" in lowered else ""


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the plugin's options (all under --tracking-*)."""
    group = parser.getgroup("accelerate-tracking")
    group.addoption(
        "--tracking-hardware",
        default="cpu",
        metavar="DEVICE",
        help="device the suite runs on (cpu, cuda, ...): the `hardware` fixture and the run's",
    )
    group.addoption(
        "--tracking-model-source",
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
        "--tracking-tag", action="append", default=[], metavar="K=V", help="tag the run (repeat)"
    )
    group.addoption(
        "--tracking-run-id", default=None, metavar="ID", help="run id (default: a new uuid4)"
    )
    group.addoption(
        "--tracking-api-key",
        default=None,
        metavar="KEY",
        help="sent as the X-API-Key header (default: $ACCELERATE_TRACKING_API_KEY)",
    )
    group.addoption(
        "--tracking-spool",
        default=None,
        metavar="PATH",
        help="where runs that could not be sent are kept (default: in the pytest cache dir)",
    )
    group.addoption(
        "--tracking-flush-timeout",
        default=DEFAULT_FLUSH_TIMEOUT_S,
        type=float,
        metavar="SECONDS",
        help="longest wait at session end for the server before spooling (default 10)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the test-type markers, and the tracker when a tracking option is given."""
    config.addinivalue_line("markers", "basic: quick checks every run does")
    config.addinivalue_line("markers", "comprehensive: the full suite (includes basic)")
    config.addinivalue_line("markers", "fault_tolerance: error handling and cleanup checks")
    # xdist workers forward their reports to the controller, which does the tracking.
    if hasattr(config, "workerinput"):
        return
    events_path = config.getoption("tracking_events")
    url = config.getoption("tracking_url")
    if not events_path and not url:
        return
    events = _EventsFile(Path(events_path)) if events_path else None
    relay = _relay_from_options(config, str(url)) if url else None
    config.pluginmanager.register(_Tracker(config, events, relay), RECORDER_PLUGIN_NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the tracker's events file."""
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
    """Return the device this session runs on (--tracking-hardware)."""
    return str(request.config.getoption("tracking_hardware"))


@pytest.fixture
def model_source(request: pytest.FixtureRequest) -> str:
    """Return "hub" or "tiny": where the suite loads its model from."""
    source = str(request.config.getoption("tracking_model_source"))
    if source != "auto":
        return source
    offline = (
        os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    )
    return "tiny" if offline or os.environ.get("APP_MODEL_SOURCE") != "hub" else "hub"


# --- outcomes --------------------------------------------------------------------------------


def _now() -> str:
    """Return the current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat()


def case_name(name: str) -> str:
    """Return a test id fitted to the server's name bound (cut, made unique by a hash)."""
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{name[: NAME_LIMIT - 16]}...#{digest}"


def shorten_error(text: str | None) -> str | None:
    """Return error text cut to ERROR_TEXT_LIMIT characters, keeping its start and end."""
    if text is None:
        return None
    text = text.strip()
    if len(text) <= ERROR_TEXT_LIMIT:
        return text
    marker = f"\n... [{len(text) - ERROR_TEXT_LIMIT} characters cut] ...\n"
    head = ERROR_TEXT_LIMIT // 4
    tail = ERROR_TEXT_LIMIT - head - len(marker)
    return text[:head] + marker + text[-tail:]


def _longrepr(report: pytest.TestReport | pytest.CollectReport) -> str:
    """Return a failed report's full text (traceback and message)."""
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


def _unrepr(value: Any) -> Any:
    """Undo one repr() of a string (see _subtest_name); anything else comes back as it is."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError, SyntaxError, MemoryError, RecursionError):
            inner = ast.literal_eval(value)
            if isinstance(inner, str):
                return inner
    return value


def _subtest_name(report: pytest.TestReport) -> str | None:
    """Return `nodeid [msg] (k=v)` for a subtest report (pytest's own wording), else None."""
    context = getattr(report, "context", None)
    if context is None or not hasattr(context, "kwargs"):
        return None
    kwargs = dict(context.kwargs)
    if getattr(report, "node", None) is not None:
        # A report an xdist worker sent: pytest repr()s the values again when it rebuilds the
        # context, so `i=0` would read `i='0'`. One repr is undone to keep the id stable.
        kwargs = {k: _unrepr(v) for k, v in kwargs.items()}
    parts = []
    if context.msg is not None:
        parts.append(f"[{context.msg}]")
    if kwargs:
        parts.append("(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")")
    return f"{report.nodeid} {' '.join(parts) or '(<subtest>)'}"


def _report_outcome(report: pytest.TestReport) -> tuple[str, str | None]:
    """Return (status, error text) of one call-phase (or subtest) report."""
    xfail_reason = getattr(report, "wasxfail", None)
    if report.passed:
        return ("xpassed" if xfail_reason is not None else "passed"), None
    if report.skipped:
        if xfail_reason is not None:
            return "xfailed", xfail_reason or _longrepr(report)
        return "skipped", _skip_reason(report)
    return "failed", _longrepr(report)


Case = tuple[str, str, str | None, float]  # name, status, error text, duration in ms


def outcomes(nodeid: str, reports: list[pytest.TestReport]) -> list[Case]:
    """Return the (name, status, error, ms) cases of one test, counted as pytest's JUnit XML does.

    One case for the test (setup/call/teardown folded), one per subtest, and one more,
    `<nodeid> [teardown]`, when a teardown error follows a failed call (JUnit counts both).
    """
    cases: list[Case] = []
    status: str | None = None
    error: str | None = None
    duration = 0.0
    for report in reports:
        sub = _subtest_name(report)
        if sub is not None:
            sub_status, sub_error = _report_outcome(report)
            cases.append((sub, sub_status, sub_error, round(report.duration * 1000.0, 3)))
            continue
        duration += report.duration
        if report.when == "call":
            status, error = _report_outcome(report)
        elif report.skipped:
            # Skipped in setup (skip marker, skipif, pytest.skip in a fixture) or xfail in setup.
            status, error = _report_outcome(report)
        elif report.failed:
            if report.when == "setup":
                status, error = "error", f"setup: {_longrepr(report)}"
            elif status == "failed":
                text = f"teardown: {_longrepr(report)}"
                cases.append((f"{nodeid} [teardown]", "error", text, 0.0))
            elif status != "error":
                status, error = "error", f"teardown: {_longrepr(report)}"
    if status is None and not cases:
        status = "passed"
    if status is not None:
        cases.insert(0, (nodeid, status, error, round(duration * 1000.0, 3)))
    return cases


# --- sinks -----------------------------------------------------------------------------------


class _EventsFile:
    """Append events as JSON lines to a file, flushing each line (the server's runner reads it)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = path.open("a", encoding="utf-8")

    def emit(self, event: dict[str, Any]) -> None:
        """Write one event as a line and flush it."""
        if self._file is None:
            return
        self._file.write(json.dumps(event, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _default_spool(config: pytest.Config) -> Path:
    """Return the spool path: in the pytest cache dir, else in the user's cache dir."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        try:
            return Path(cache.mkdir("accelerate-tracking")) / SPOOL_NAME
        except OSError:
            pass
    # The cache provider is disabled (-p no:cacheprovider): $XDG_CACHE_HOME or ~/.cache.
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "accelerate-tracking" / SPOOL_NAME


def _relay_from_options(config: pytest.Config, url: str) -> _Relay:
    """Build the sender process's handle from the command line, or fail with a usage error."""
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
    flush = float(config.getoption("tracking_flush_timeout"))
    if not 0 <= flush <= 3600:
        raise pytest.UsageError("--tracking-flush-timeout takes 0 to 3600 seconds")
    run: dict[str, Any] = {
        "run_id": str(config.getoption("tracking_run_id") or uuid.uuid4().hex),
        "model_name": str(model),
        "hardware": [str(config.getoption("tracking_hardware"))],
        "test_type": str(config.getoption("tracking_test_type") or "comprehensive"),
        "status": "running",
        "started_at": _now(),
        "tags": tags,
    }
    if config.getoption("tracking_batch"):
        run["batch_id"] = str(config.getoption("tracking_batch"))
    spool = config.getoption("tracking_spool")
    api_key = config.getoption("tracking_api_key") or os.environ.get("ACCELERATE_TRACKING_API_KEY")
    return _Relay(
        url.rstrip("/"),
        run,
        api_key=api_key or None,
        spool=Path(spool) if spool else _default_spool(config),
        flush_timeout_s=flush,
    )


class _Relay:
    """The test process's side of the sender process: a journal to append to, and the process.

    Each result costs the test process one short line written to the journal; the sender
    process (relay.py) follows the journal and does the HTTP, JSON, batching and retries, so
    none of it holds this process's GIL. At the end the session waits for its answer (bounded
    by the flush timeout); without one it spools the run from the journal itself.
    """

    def __init__(
        self,
        url: str,
        run: dict[str, Any],
        *,
        api_key: str | None,
        spool: Path,
        flush_timeout_s: float,
    ) -> None:
        self.url = url
        self.run = run
        self.api_key = api_key
        self.spool = spool
        self.flush_timeout_s = flush_timeout_s
        self.journal: JournalWriter | None = None
        self.path: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_error: str | None = None

    def start(self, hardware: str) -> None:
        """Create the journal and start the sender process on it."""
        fd, name = tempfile.mkstemp(prefix="accelerate-tracking-", suffix=".journal")
        os.close(fd)
        self.path = Path(name)
        header = {
            "url": self.url,
            "run": self.run,
            "spool": str(self.spool),
            "flush_timeout_s": self.flush_timeout_s,
            "hardware": hardware,
        }
        self.journal = JournalWriter(self.path, header)
        env = dict(os.environ)
        if self.api_key:
            env["ACCELERATE_TRACKING_API_KEY"] = self.api_key  # never on a command line
        # -P: nothing from the project's folder shadows what the sender imports. The folder this
        # copy of the package is in comes last on its path, however pytest found the plugin.
        source = str(Path(__file__).resolve().parent.parent)
        command = [sys.executable, "-P", "-c", RELAY_BOOT, source, name, str(os.getpid())]
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            self.start_error = f"could not start the sender process: {exc}"

    def finish(self, final: dict[str, Any]) -> str:
        """End the run: wait (bounded) for the sender process's summary line, else spool."""
        if self.journal is None or self.path is None:
            return ""
        self.journal.final(final)
        self.journal.close()
        why = self.start_error or "the sender process did not answer"
        if self.proc is not None:
            try:
                out, err = self.proc.communicate(timeout=self.flush_timeout_s + RELAY_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, err = self.proc.communicate()
                why = f"no answer from the sender process after {self.flush_timeout_s:g} s"
            for line in reversed(out.decode("utf-8", "replace").splitlines()):
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    summary = str(json.loads(line)["summary"])
                    self.path.unlink(missing_ok=True)
                    return summary
            lines = err.decode("utf-8", "replace").strip().splitlines()
            if lines:
                why = f"{why}: {lines[-1][:300]}"
        return self._spool(why)

    def _spool(self, why: str) -> str:
        """Spool the run from the journal (the sender process gave no answer)."""
        assert self.path is not None
        header, cases, metrics = read_journal(self.path)
        document = run_document(self.run, header["final"], cases, metrics)
        tail = run_tail(str(self.run["run_id"]), len(cases))
        summary = spool_or_lost(self.spool, self.url, document, tail, why)
        if not summary.startswith("accelerate-tracking: LOST"):
            self.path.unlink(missing_ok=True)
        return summary


class _Tracker:
    """Turn the session's hooks into cases: journaled for the sender, written to the events file."""

    def __init__(
        self, config: pytest.Config, events: _EventsFile | None, relay: _Relay | None
    ) -> None:
        self.config = config
        self.events = events
        self.relay = relay
        self.hardware = str(config.getoption("tracking_hardware"))
        self.reports: dict[str, list[pytest.TestReport]] = {}
        self.started: dict[str, str] = {}
        self.collect_seen: set[str] = set()
        self.collect_problems: list[pytest.CollectReport] = []
        self.announced = False
        self.summary: str | None = None

    def close(self) -> None:
        """Close the events file (and the journal, if the session never finished)."""
        if self.events is not None:
            self.events.close()
        if self.relay is not None and self.relay.journal is not None:
            self.relay.journal.close()  # the sender process completes the run as an error

    def _record(
        self,
        cases: list[Case],
        properties: dict[str, float],
        nodeid: str,
        started_at: str | None,
        when: str | None = None,
    ) -> None:
        finished_at = _now() if self.events is not None or properties else None
        journal = self.relay.journal if self.relay is not None else None
        journaled: list[JournalCase] = []
        for index, (name, status, error, duration_ms) in enumerate(cases):
            name, text = case_name(name), shorten_error(error)
            props = properties if index == 0 else {}
            if journal is not None:
                metrics = None
                if props:
                    metrics = [
                        {
                            "name": metric,
                            "value": value,
                            "unit": metric_unit(metric),
                            "hardware": self.hardware,
                            "timestamp": finished_at,
                        }
                        for metric, value in props.items()
                    ]
                journaled.append((name, status, duration_ms, text, metrics))
            if self.events is not None:
                event = {
                    "event": "test_finished",
                    "name": name,
                    "status": status,
                    "duration_ms": duration_ms,
                    "error": text,
                    "hardware": self.hardware,
                    "nodeid": nodeid,
                    "properties": props,
                    "started_at": started_at or finished_at,
                    "finished_at": finished_at,
                }
                if when:
                    event["when"] = when
                self.events.emit(event)
        if journal is not None and journaled:
            journal.cases(journaled)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Start the sender process (it creates the run)."""
        if self.relay is not None:
            self.relay.start(self.hardware)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Keep collection errors and skipped modules: they are cases (as in JUnit XML)."""
        if report.passed or report.nodeid in self.collect_seen:
            return
        self.collect_seen.add(report.nodeid)
        self.collect_problems.append(report)
        if self.announced:  # reported after the collection finished (xdist): record it now
            self._record_problems()

    def _record_problems(self) -> None:
        """Record the kept collection problems as cases."""
        problems, self.collect_problems = self.collect_problems, []
        for report in problems:
            if report.failed:
                status, error = "error", f"collection: {_longrepr(report)}"
            else:
                status, error = "skipped", _skip_reason(report)
            case = (report.nodeid or ".", status, error, 0.0)
            self._record([case], {}, report.nodeid, None, "collect")

    def _collected(self, names: list[str]) -> None:
        """Announce the tests that will run, plus collection problems, then record those."""
        if self.announced:
            return
        self.announced = True
        names = names + [report.nodeid for report in self.collect_problems]
        if self.relay is not None and self.relay.journal is not None:
            self.relay.journal.collected(len(names))
        if self.events is not None:
            self.events.emit({"event": "collected", "count": len(names), "tests": names})
        self._record_problems()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Announce the tests that will run (after deselection)."""
        if session.items or not self.config.pluginmanager.hasplugin("dsession"):
            self._collected([item.nodeid for item in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist the controller learns the tests from its workers' collection."""
        self._collected(list(ids))

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        """Note when a test started (only the events file needs it)."""
        if self.events is not None:
            started = _now()
            self.started[nodeid] = started
            self.events.emit({"event": "test_started", "name": case_name(nodeid), "nodeid": nodeid})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep each phase's (and subtest's) report until the test finishes."""
        self.reports.setdefault(report.nodeid, []).append(report)

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        """Record the test's cases."""
        reports = self.reports.pop(nodeid, None)
        if not reports:
            return
        properties = _numeric_properties(reports[-1])
        started = self.started.pop(nodeid, None)
        self._record(outcomes(nodeid, reports), properties, nodeid, started)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Complete the run: a bounded flush, then spool what could not be sent."""
        self._collected([])  # a session that never finished collecting still reports its errors
        finished_at = _now()
        if self.events is not None:
            event = {"event": "session_finished", "exitstatus": int(exitstatus)}
            self.events.emit({**event, "finished_at": finished_at})
        if self.relay is None:
            return
        final: dict[str, Any] = {"status": "completed", "completed_at": finished_at}
        if int(exitstatus) not in (0, 1, 5):
            # Interrupted, internal error or usage error: the session did not finish.
            reason = f"pytest ended with exit status {exitstatus}"
            final = {**final, "status": "error", "error": reason}
        self.summary = self.relay.finish(final) or None

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Print the one line saying where the run went (or where it was spooled)."""
        if self.summary:
            terminalreporter.write_line(self.summary)
