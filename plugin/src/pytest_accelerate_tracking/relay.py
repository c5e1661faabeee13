"""The sender process: follow a session's journal and record it on the server.

`python -m pytest_accelerate_tracking.relay JOURNAL PARENT_PID`, started by the plugin. HTTP,
JSON and retries run here, out of the test process (and its GIL); the test process only appends
one line per result. At the end it prints one JSON line, `{"summary": ...}`, and exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pytest_accelerate_tracking.journal import CASE, COLLECTED, FINAL, case_of
from pytest_accelerate_tracking.sender import Sender

POLL_S = 0.05  # how often the journal is read for new lines
ORPHANED = {"status": "error", "error": "the test session ended without finishing"}


def follow(path: Path, parent: int, sender: Sender, hardware: str) -> dict[str, Any]:
    """Hand the journal's cases to the sender until the session's end; return its final."""
    pending = b""
    with path.open("rb") as journal:
        journal.readline()  # the header
        while True:
            chunk = journal.read()
            if not chunk:
                if os.getppid() != parent:  # the test process died without an end line
                    return dict(ORPHANED)
                time.sleep(POLL_S)
                continue
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                line = json.loads(raw)
                if line[0] == CASE:
                    sender.add(*case_of(line, hardware))
                elif line[0] == COLLECTED:
                    sender.collected = int(line[1])
                elif line[0] == FINAL:
                    return dict(line[1])


def main(argv: list[str]) -> int:
    """Record the session a journal describes; print the summary line as JSON."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the test process: it ends us
    path, parent = Path(argv[0]), int(argv[1])
    with path.open("rb") as journal:
        header = json.loads(journal.readline())
    sender = Sender(
        header["url"],
        header["run"],
        api_key=os.environ.get("ACCELERATE_TRACKING_API_KEY") or None,
        spool=Path(header["spool"]),
        flush_timeout_s=float(header["flush_timeout_s"]),
    )
    sender.start()
    final = follow(path, parent, sender, str(header["hardware"]))
    summary = sender.finish(final)
    if final == ORPHANED:
        path.unlink(missing_ok=True)  # nobody is left to read the journal: the run went or spooled
    with contextlib.suppress(OSError):  # a test process that died reads nothing
        sys.stdout.write(json.dumps({"summary": summary}) + "\n")
        sys.stdout.flush()
    # The sender thread may still wait on a stalled server; the run is complete or spooled.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
