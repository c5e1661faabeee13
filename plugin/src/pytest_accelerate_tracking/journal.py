"""The session's journal (one compact line per result) and the spool file; no network here.

The test process appends to the journal; the sender process (relay.py) follows it and posts.
Nothing in this module imports httpx, so the test process never pays for it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO, Any

SPOOL_FORMAT = "accelerate-tracking-spool"
_spool_lock = threading.Lock()

# Journal lines after the header (a JSON object): JSON arrays whose first item says what they are.
CASE = "c"  # ["c", name, status, duration_ms, error, metrics or null]
COLLECTED = "n"  # ["n", number of tests collected]
FINAL = "f"  # ["f", {"status", "completed_at", ...}]: the session ended

_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode

# name, status, duration in ms, error text, metric points (None when there are none)
JournalCase = tuple[str, str, float, str | None, list[dict[str, Any]] | None]


class JournalWriter:
    """Append journal lines, one write per line (the sender process sees each at once)."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self._file: IO[bytes] | None = path.open("ab")
        self._write(header)

    def _write(self, *items: Any) -> None:
        if self._file is None:
            return
        self._file.write("".join(_encode(item) + "\n" for item in items).encode("ascii"))
        self._file.flush()

    def cases(self, cases: list[JournalCase]) -> None:
        """Append a test's cases (name, status, duration_ms, error, metrics or None): one write."""
        self._write(*((CASE, *case) for case in cases))

    def collected(self, count: int) -> None:
        """Append how many tests the session collected (for progress)."""
        self._write((COLLECTED, count))

    def final(self, final: dict[str, Any]) -> None:
        """Append the session's end (the sender completes the run)."""
        self._write((FINAL, final))

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


def case_of(line: list[Any], hardware: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return (case, metrics) of a journal case line."""
    _, name, status, duration_ms, error, metrics = line
    case = {
        "name": name,
        "status": status,
        "duration_ms": duration_ms,
        "error": error,
        "hardware": hardware,
    }
    return case, list(metrics or [])


def read_journal(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (header, cases, metrics) of a journal; a torn last line is left out."""
    with path.open("rb") as f:
        lines = f.read().split(b"\n")
    header: dict[str, Any] = json.loads(lines[0])
    hardware = str(header["hardware"])
    cases: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    final: dict[str, Any] | None = None
    for raw in lines[1:]:
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line[0] == CASE:
            case, points = case_of(line, hardware)
            cases.append(case)
            metrics.extend(points)
        elif line[0] == FINAL:
            final = line[1]
    header["final"] = final
    return header, cases, metrics


def run_document(
    run: dict[str, Any],
    final: dict[str, Any] | None,
    cases: list[dict[str, Any]],
    metrics: list[dict[str, Any]],
) -> dict[str, Any]:
    """Return a whole run as one recording document (for an idempotent upsert)."""
    return {
        **run,
        **(final or {}),
        "progress": 1.0,
        "results": {"test_details": cases},
        "metrics": metrics,
    }


# --- spool -----------------------------------------------------------------------------------


def spool_line(url: str, document: dict[str, Any]) -> str:
    """Return the spool line of one run document for one server."""
    entry = {"format": SPOOL_FORMAT, "version": 1, "url": url, "run": document}
    return json.dumps(entry, separators=(",", ":"), default=str)


def write_spool(path: Path, url: str, document: dict[str, Any]) -> None:
    """Append one run document to the spool file (one JSON object per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _spool_lock, path.open("a", encoding="utf-8") as f:
        f.write(spool_line(url, document) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_spool(path: Path) -> list[str]:
    """Return the spool's lines (none when the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line.strip()]


def drop_from_spool(path: Path, sent: set[str]) -> None:
    """Rewrite the spool without the lines already sent (atomically; removed when empty)."""
    with _spool_lock:
        kept = [line for line in read_spool(path) if line not in sent]
        if not kept:
            path.unlink(missing_ok=True)
            return
        scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        scratch.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(scratch, path)


def spool_or_lost(
    spool: Path, url: str, document: dict[str, Any], tail: str, why: str, replayed: str = ""
) -> str:
    """Spool a run that could not be recorded; return the one summary line saying so."""
    try:
        write_spool(spool, url, document)
    except OSError as exc:
        return f"accelerate-tracking: LOST {tail}: {why}; could not spool to {spool}: {exc}"
    return (
        f"accelerate-tracking: could not record {tail} at {url} ({why}); "
        f"spooled to {spool}; send it with `python -m app upload {spool}` "
        f"or `python -m pytest_accelerate_tracking upload {spool}`, "
        f"or the next run with the same --tracking-url sends it{replayed}"
    )


def run_tail(run_id: str, results: int) -> str:
    """Return `run ID, N results` for the summary line."""
    return f"run {run_id}, {results} result{'s' if results != 1 else ''}"
