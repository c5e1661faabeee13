"""JUnit XML reader: turns the files CI tools write into runs and cases (no HTTP, no SQL).

Reads the dialects real CI produces: pytest, Maven Surefire / Gradle, Jest (jest-junit),
Go (go-junit-report, gotestsum), .NET (JunitXml.TestLogger), PHPUnit and nested `<testsuites>`.
One streaming pass over expat (through defusedxml, which refuses DTDs, entity expansion and
external entities), keeping only what a run needs, so a 100,000-case file stays cheap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from xml.parsers import expat

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from app.core.errors import BadRequest

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_CASES = 500_000
MAX_NAME_CHARS = 1024
MAX_ERROR_CHARS = 100_000
MAX_METRICS = 1_000
_TRUNCATED = "\n[... truncated]"

_OUTCOMES = {"failure": "failed", "error": "error", "skipped": "skipped"}
# pytest writes xfail as <skipped type="pytest.xfail">; xpass (strict) as a failure.
_XFAIL_TYPES = {"pytest.xfail"}
_PY_MODULE = re.compile(r"^(test_\w+|\w+_test|tests?|conftest)$")


class JunitError(BadRequest):
    """A JUnit file cannot be read; the detail says what and where (400)."""

    code = "invalid_junit"


@dataclass
class Case:
    """One `<testcase>`: its test id, outcome, duration and error text."""

    name: str
    status: str = "passed"
    duration_ms: float | None = None
    error: str | None = None


@dataclass
class Suite:
    """The cases and numeric properties of one run's worth of JUnit XML."""

    name: str
    cases: list[Case] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    duration: float | None = None
    pytest: bool = False

    @property
    def completed_at(self) -> datetime | None:
        """Return when the suite ended, when its start and duration are known."""
        if self.started_at is None or self.duration is None:
            return None
        return self.started_at + timedelta(seconds=self.duration)


def case_id(classname: str, name: str, *, pytest: bool) -> str:
    """Return a case's id: a pytest node id for pytest's dotted classnames, else `class::name`."""
    if not classname:
        return name
    return f"{_prefix(classname, pytest)}::{name}"


@lru_cache(maxsize=4096)
def _prefix(classname: str, pytest: bool) -> str:
    # Classnames repeat across a file's cases: convert each once.
    if pytest:
        parts = classname.split(".")
        # The module is the last dotted part named like a test file; the rest are classes.
        for i in range(len(parts) - 1, -1, -1):
            if _PY_MODULE.match(parts[i]):
                return "::".join(["/".join(parts[: i + 1]) + ".py", *parts[i + 1 :]])
    return classname


def _number(value: str | None, what: str, where: Callable[[], str]) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = float(value.replace(",", ""))
    except ValueError:
        raise JunitError(f"{what}={value!r} is not a number{where()}") from None
    if not math.isfinite(number) or number < 0:
        raise JunitError(f"{what}={value!r} must be a finite number >= 0{where()}")
    return number


def _timestamp(value: str | None, where: Callable[[], str]) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise JunitError(f"timestamp={value!r} is not an ISO 8601 time{where()}") from None
    # JUnit timestamps carry no zone in most dialects; CI machines write them in UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _clip(text: str) -> str:
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return text[: MAX_ERROR_CHARS - len(_TRUNCATED)] + _TRUNCATED


class _Reader:
    """Expat callbacks: a small state machine over testsuites, testcases and their outcomes."""

    def __init__(self, source: str, per_suite: bool) -> None:
        self.source = source
        self.per_suite = per_suite
        # defusedxml installs its guards (no DTD, no entity declarations, no external
        # references) on the expat parser; our own element handlers then replace
        # ElementTree's, which would build a tree we do not need (twice as slow).
        self.parser = DefusedXMLParser(forbid_dtd=True)
        self.expat: Any = self.parser.parser
        self.expat.ordered_attributes = False  # attributes as a dict
        self.expat.StartElementHandler = self.start
        self.expat.EndElementHandler = self.end
        self.expat.CharacterDataHandler = self.data
        self.stack: list[str] = []
        self.suites: list[Suite] = []
        self.suite_depth = 0
        self.file_suite: Suite | None = None
        self.case: Case | None = None
        self.case_props = False
        self.outcome: list[str] | None = None
        self.outcome_chars = 0
        self.n_cases = 0
        self.root_seen = False
        # <testsuites>-level properties apply to every run of the file.
        self.root_name = ""
        self.root_time: float | None = None
        self.top_suites = 0
        self.root_metrics: dict[str, float] = {}
        self.root_props: dict[str, str] = {}

    def where(self) -> str:
        line, column = self.expat.CurrentLineNumber, self.expat.CurrentColumnNumber + 1
        return f" ({self.source}, line {line}, column {column})"

    def current(self) -> Suite:
        assert self.suites
        return self.suites[-1]

    # --- expat handlers -----------------------------------------------------------------------

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        tag = tag.rsplit("}", 1)[-1]  # tolerate a default namespace
        parent = self.stack[-1] if self.stack else None
        self.stack.append(tag)
        if parent is None:
            if tag not in ("testsuites", "testsuite"):
                raise JunitError(
                    f"the root element must be <testsuites> or <testsuite>, not <{tag}>"
                    + self.where()
                )
            self.root_seen = True
            if tag == "testsuites":
                self.root_name = attrs.get("name", "")
                self.root_time = _number(attrs.get("time"), "time", self.where)
        if tag == "testsuite":
            self.start_suite(attrs)
        elif tag == "testcase":
            self.start_case(attrs)
        elif tag in _OUTCOMES and self.case is not None and parent == "testcase":
            self.start_outcome(tag, attrs)
        elif tag == "flakyFailure" or tag == "flakyError" or tag == "rerunFailure":
            pass  # Surefire reruns: the testcase's own outcome element decides
        elif tag == "property" and parent == "properties":
            self.property(attrs)

    def end(self, tag: str) -> None:
        tag = self.stack.pop()
        if tag == "testsuite":
            self.suite_depth -= 1
        elif tag == "testcase" and self.case is not None:
            self.current().cases.append(self.case)
            self.case = None
        elif tag in _OUTCOMES and self.outcome is not None and self.stack[-1:] == ["testcase"]:
            assert self.case is not None
            text = "".join(self.outcome).strip()
            parts = [p for p in (self.case.error, text) if p]
            self.case.error = _clip("\n".join(parts)) if parts else None
            self.outcome = None

    def data(self, text: str) -> None:
        if self.outcome is not None and self.outcome_chars <= MAX_ERROR_CHARS:
            self.outcome.append(text)
            self.outcome_chars += len(text)

    # --- elements -----------------------------------------------------------------------------

    def start_suite(self, attrs: dict[str, str]) -> None:
        where = self.where
        outermost = self.suite_depth == 0
        self.top_suites += outermost
        self.suite_depth += 1
        name = attrs.get("name", "")
        started = _timestamp(attrs.get("timestamp"), where)
        duration = _number(attrs.get("time"), "time", where)
        if outermost and (self.per_suite or not self.suites):
            suite = Suite(name=name or self.source, started_at=started, duration=duration)
            suite.metrics.update(self.root_metrics)
            suite.properties.update(self.root_props)
            self.suites.append(suite)
        elif outermost:
            # One run for the whole file: its duration is the sum of its top-level suites.
            suite = self.current()
            if duration is not None:
                suite.duration = (suite.duration or 0.0) + duration
            if started is not None and (suite.started_at is None or started < suite.started_at):
                suite.started_at = started
        if name == "pytest":
            self.current().pytest = True

    def start_case(self, attrs: dict[str, str]) -> None:
        where = self.where
        if not self.suites:
            raise JunitError("<testcase> outside any <testsuite>" + where())
        self.n_cases += 1
        if self.n_cases > MAX_CASES:
            raise JunitError(f"more than {MAX_CASES} test cases in one file" + where())
        name = attrs.get("name")
        if not name:
            raise JunitError("<testcase> without a name" + where())
        classname = attrs.get("classname") or attrs.get("class") or ""
        pytest = self.current().pytest or attrs.get("file", "").endswith(".py")
        identity = case_id(classname.strip(), name.strip(), pytest=pytest)
        if len(identity) > MAX_NAME_CHARS:
            raise JunitError(f"test id longer than {MAX_NAME_CHARS} characters" + where())
        seconds = _number(attrs.get("time"), "time", where)
        self.case = Case(identity, duration_ms=None if seconds is None else seconds * 1000)

    def start_outcome(self, tag: str, attrs: dict[str, str]) -> None:
        assert self.case is not None
        status = _OUTCOMES[tag]
        if status == "skipped" and attrs.get("type") in _XFAIL_TYPES:
            status = "xfailed"
        # The worst outcome wins when a testcase lists several (pytest: failure + teardown error).
        order = ["passed", "skipped", "xfailed", "failed", "error"]
        if order.index(status) > order.index(self.case.status):
            self.case.status = status
        message = attrs.get("message")
        if message:
            self.case.error = _clip("\n".join(p for p in (self.case.error, message) if p))
        self.outcome = []
        self.outcome_chars = 0

    def property(self, attrs: dict[str, str]) -> None:
        if "testcase" in self.stack:
            return  # per-case properties (pytest's record_property) are not run metrics
        name = (attrs.get("name") or "").strip()
        value = attrs.get("value")
        if value is None:
            return
        if self.suite_depth == 0:
            metrics, properties = self.root_metrics, self.root_props
        else:
            metrics, properties = self.current().metrics, self.current().properties
        if not name or len(name) > 256:
            raise JunitError("a <property> needs a name of 1 to 256 characters" + self.where())
        try:
            number = float(value)
        except ValueError:
            if len(properties) < MAX_METRICS:
                properties[name] = value[:1024]
            return
        if math.isfinite(number) and len(metrics) < MAX_METRICS:
            metrics[name] = number


def parse(data: bytes, *, source: str = "junit.xml", per_suite: bool = False) -> list[Suite]:
    """Read one JUnit XML file into runs (one, or one per top-level `<testsuite>`)."""
    if len(data) > MAX_FILE_BYTES:
        raise JunitError(f"{source} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    reader = _Reader(source, per_suite)
    try:
        reader.expat.Parse(data, True)
    except expat.ExpatError as exc:
        raise JunitError(
            f"{source} is not well-formed XML: {expat.ErrorString(exc.code)} "
            f"(line {exc.lineno}, column {exc.offset + 1})"
        ) from None
    except DefusedXmlException as exc:
        raise JunitError(
            f"{source} is refused: {type(exc).__name__} (DTDs, entities and external "
            f"references are not allowed){reader.where()}"
        ) from None
    if not reader.root_seen:
        raise JunitError(f"{source} is empty")
    if not reader.suites:
        reader.suites.append(Suite(name=reader.root_name or source))
    elif not per_suite:
        # The whole file is one run: named and timed by <testsuites> when it says.
        whole = reader.suites[0]
        if reader.root_name or reader.top_suites > 1:
            whole.name = reader.root_name or source
        if reader.root_time is not None:
            whole.duration = reader.root_time
    return reader.suites
