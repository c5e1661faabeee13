"""Send a session's results in batches from a background thread; spool what cannot be sent.

Runs in the sender process (relay.py), never in the test process, which only writes a journal.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from pytest_accelerate_tracking.journal import (
    SPOOL_FORMAT,
    drop_from_spool,
    read_spool,
    run_document,
    run_tail,
    spool_line,
    spool_or_lost,
    write_spool,
)

__all__ = ["Sender", "read_spool", "spool_line", "upload_spool", "write_spool"]

BATCH_MAX_CASES = 1000  # cases per POST /run/{id}/cases
BATCH_INTERVAL_S = 0.5  # a case waits at most this long before it is sent (live progress)
# Progress (PATCH /run/{id}) goes with a batch at most this often, and always with the last:
# each update costs the server a write of its own, on the machine the suite may share.
PROGRESS_INTERVAL_S = 2.0
HTTP_TIMEOUT_S = 10.0
HTTP_CONNECT_TIMEOUT_S = 2.0
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 5.0
CLOSING_ATTEMPTS = 2  # tries per request once the session has ended
CURRENT_STEP_LIMIT = 512  # the server's bound on a run's current_step


class Refused(Exception):
    """The server answered with a client error: sending the same request again will not help."""


class Unreachable(Exception):
    """The server could not be reached or answered 5xx / 408 / 429: worth retrying."""


def _client(api_key: str | None) -> httpx.Client:
    """Return an HTTP client with the API key header and bounded timeouts.

    `Prefer: return=minimal` asks the server to answer writes with the run's summary, not the
    whole run with every case so far (which grows with the session).
    """
    headers = {"Prefer": "return=minimal"}
    if api_key:
        headers["X-API-Key"] = api_key
    timeout = httpx.Timeout(HTTP_TIMEOUT_S, connect=HTTP_CONNECT_TIMEOUT_S)
    return httpx.Client(headers=headers, timeout=timeout)


def _send(client: httpx.Client, method: str, url: str, body: Any, **headers: str) -> None:
    """Send one request; raise Unreachable (retry) or Refused (do not)."""
    try:
        response = client.request(method, url, json=body, headers=headers or None)
    except httpx.HTTPError as exc:
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise Unreachable(why) from exc
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise Unreachable(f"{method} {url} answered {response.status_code}")
    if response.is_error:
        detail = response.text.strip().replace("\n", " ")[:300]
        raise Refused(f"{method} {url} answered {response.status_code}: {detail}")


def post_document(client: httpx.Client, url: str, document: dict[str, Any]) -> None:
    """Record a whole run in one idempotent upsert (POST /api/test/db/runs)."""
    _send(client, "POST", f"{url}/api/test/db/runs", document, Prefer="return=minimal")


# --- upload of a spool file -------------------------------------------------------------


@dataclass
class UploadResult:
    """What an upload of a spool file did."""

    sent: list[str] = field(default_factory=list)  # run ids
    kept: int = 0  # entries left in the spool
    errors: list[str] = field(default_factory=list)


def upload_spool(
    path: Path,
    *,
    url: str | None = None,
    api_key: str | None = None,
    only_url: str | None = None,
) -> UploadResult:
    """Send every run in a spool file and remove those the server stored (idempotent).

    `url` overrides the server each entry names; `only_url` sends only the entries for that
    server (what a later plugin run does). Entries that fail stay in the file.
    """
    result = UploadResult()
    sent: set[str] = set()
    lines = read_spool(path)
    if not lines:
        return result
    with _client(api_key) as client:
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or entry.get("format") != SPOOL_FORMAT:
                    raise ValueError("not an accelerate-tracking spool entry")
                document, target = entry["run"], str(url or entry["url"]).rstrip("/")
            except (ValueError, KeyError, TypeError) as exc:
                result.errors.append(f"{path}:{number}: {exc}")
                result.kept += 1
                continue
            if only_url is not None and target != only_url.rstrip("/"):
                result.kept += 1
                continue
            try:
                post_document(client, target, document)
            except (Unreachable, Refused) as exc:
                result.errors.append(f"run {document.get('run_id')}: {exc}")
                result.kept += 1
                if isinstance(exc, Unreachable):
                    result.kept += len(lines) - number  # the server is down: stop trying
                    break
                continue
            sent.add(line)
            result.sent.append(str(document.get("run_id")))
    if sent:
        drop_from_spool(path, sent)
    return result


# --- the live sender -------------------------------------------------------------------------


class Sender:
    """Record one run: create it, send cases in batches, complete it; spool on failure.

    The caller only appends to an in-memory queue; a daemon thread talks to the server.
    """

    def __init__(
        self,
        url: str,
        run: dict[str, Any],
        *,
        api_key: str | None,
        spool: Path,
        flush_timeout_s: float,
        batch_max: int = BATCH_MAX_CASES,
        interval_s: float = BATCH_INTERVAL_S,
    ) -> None:
        self.url = url.rstrip("/")
        self.run = run
        self.run_id = str(run["run_id"])
        self.api_key = api_key
        self.spool = spool
        self.flush_timeout_s = flush_timeout_s
        self.batch_max = batch_max
        self.interval_s = interval_s
        self.cases: list[dict[str, Any]] = []  # every case, for the final document
        self.metrics: list[dict[str, Any]] = []
        self.collected = 0
        self._sent_cases = 0
        self._sent_metrics = 0
        self._progress_at = -PROGRESS_INTERVAL_S
        self._created = False
        self._consistent = True  # False once a live request may have been lost or doubled
        self._refused: str | None = None
        self._last_error: str | None = None
        self._final: dict[str, Any] | None = None
        self._done = False
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._replayed: list[str] = []
        self._thread = threading.Thread(
            target=self._main, name="accelerate-tracking-sender", daemon=True
        )

    def _run_url(self, suffix: str = "") -> str:
        return f"{self.url}/api/test/db/run/{quote(self.run_id, safe='')}{suffix}"

    # called from the test process ------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (it creates the run)."""
        self._thread.start()

    def add(self, case: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
        """Queue one case and its metrics (cheap: no I/O)."""
        with self._lock:
            self.cases.append(case)
            if metrics:
                self.metrics.extend(metrics)
        if len(self.cases) - self._sent_cases >= self.batch_max:
            self._wake.set()

    def finish(self, final: dict[str, Any]) -> str:
        """Complete the run within the flush timeout, else spool it; return the summary line."""
        self._final = final
        self._closing.set()
        self._wake.set()
        self._thread.join(self.flush_timeout_s)
        tail = run_tail(self.run_id, len(self.cases))
        replayed = ""
        if self._replayed:
            replayed = f"; sent {len(self._replayed)} spooled run(s) from {self.spool}"
        if self._done:
            return f"accelerate-tracking: recorded {tail} at {self.url}{replayed}"
        why = self._refused or self._last_error or f"not done after {self.flush_timeout_s:g} s"
        return spool_or_lost(self.spool, self.url, self.document(), tail, why, replayed)

    def document(self) -> dict[str, Any]:
        """Return the whole run as one recording document (for an idempotent upsert)."""
        with self._lock:
            cases, metrics = list(self.cases), list(self.metrics)
        return run_document(self.run, self._final, cases, metrics)

    # the background thread -------------------------------------------------------------------

    def _main(self) -> None:
        try:
            with _client(self.api_key) as client:
                self._loop(client)
        except Exception as exc:  # never let the sender crash silently: finish() spools
            self._last_error = f"{type(exc).__name__}: {exc}"

    def _attempt(self, client: httpx.Client, method: str, url: str, body: Any) -> bool:
        """Send with retries and backoff (fewer once closing); False when it did not go."""
        delay = BACKOFF_FIRST_S
        attempts = 0
        while True:
            attempts += 1
            try:
                _send(client, method, url, body)
                return True
            except Refused as exc:
                self._refused = str(exc)
                return False
            except Unreachable as exc:
                self._last_error = str(exc)
            if self._closing.is_set() and attempts >= CLOSING_ATTEMPTS:
                return False
            self._closing.wait(delay)  # a finishing session cuts the backoff short
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _loop(self, client: httpx.Client) -> None:
        if self.spool.exists():
            self._replay()
        self._created = self._attempt(client, "POST", f"{self.url}/api/test/db/runs", self.run)
        while self._created and self._refused is None:
            closing = self._closing.is_set()
            if not self._send_pending(client):
                break
            if closing:
                break
            self._wake.wait(self.interval_s)
            self._wake.clear()
        if self._closing.wait(None if self._created else 0) and self._final is not None:
            self._complete(client)

    def _send_pending(self, client: httpx.Client) -> bool:
        """Send queued cases and metrics, then progress (2 s apart, and last); False on failure."""
        with self._lock:
            cases = self.cases[self._sent_cases :]
            metrics = self.metrics[self._sent_metrics :]
        if not cases and not metrics:
            return True
        for start in range(0, len(cases), self.batch_max):
            batch = cases[start : start + self.batch_max]
            if not self._attempt(client, "POST", self._run_url("/cases"), batch):
                self._consistent = False  # a timed-out batch may have been stored after all
                return False
            self._sent_cases += len(batch)
        for start in range(0, len(metrics), self.batch_max):
            batch = metrics[start : start + self.batch_max]
            if not self._attempt(client, "POST", self._run_url("/metrics"), batch):
                self._consistent = False
                return False
            self._sent_metrics += len(batch)
        now = time.monotonic()
        if not self._closing.is_set() and now - self._progress_at < PROGRESS_INTERVAL_S:
            return True
        self._progress_at = now
        total = max(self.collected, self._sent_cases)
        progress = {
            "progress": round(min(self._sent_cases / total, 1.0), 4) if total else 0.0,
            "current_step": str(cases[-1]["name"])[:CURRENT_STEP_LIMIT] if cases else None,
        }
        # Progress is cosmetic: a failed update is not worth a retry loop.
        with contextlib.suppress(Unreachable, Refused):
            _send(client, "PATCH", self._run_url(), {k: v for k, v in progress.items() if v})
        return True

    def _complete(self, client: httpx.Client) -> None:
        """Complete the run: the cheap /complete when all went live, else the whole document."""
        live = self._created and self._consistent and self._refused is None
        if (
            live
            and self._send_pending(client)
            and self._attempt(client, "POST", self._run_url("/complete"), self._final)
        ):
            self._done = True
            return
        if self._refused is not None and not self._created:
            return  # the server refuses this run (a wrong key, say): spool it for later
        self._refused = None
        delay = BACKOFF_FIRST_S
        for _ in range(CLOSING_ATTEMPTS):
            try:
                post_document(client, self.url, self.document())
                self._done = True
                return
            except Refused as exc:
                self._refused = str(exc)
                return
            except Unreachable as exc:
                self._last_error = str(exc)
            time.sleep(delay)

    def _replay(self) -> None:
        """Send runs earlier sessions spooled for this server (entries for others stay)."""
        with contextlib.suppress(OSError):
            result = upload_spool(self.spool, api_key=self.api_key, only_url=self.url)
            self._replayed = result.sent
