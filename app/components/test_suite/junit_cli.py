"""`python -m app import-junit FILE...`: send JUnit XML files to a running server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx

# Over HTTP, not into the database file: CI machines are rarely the server's machine, and a
# DuckDB file is locked by the one server process that holds it, so a second writer could not
# open it anyway. The server applies the same checks and the same all-or-nothing transaction.
TIMEOUT_SECONDS = 300.0


def upload(
    files: list[Path],
    *,
    model_name: str,
    hardware: list[str] | None = None,
    tags: list[str] | None = None,
    batch_id: str | None = None,
    run_id: str | None = None,
    per_suite: bool = False,
    url: str = "http://127.0.0.1:8000",
    api_key: str | None = None,
    transport_client: Any = None,
) -> int:
    """Post JUnit files in one request; print one line per run; return the exit code."""
    params: list[tuple[str, str | int | float | bool | None]] = [("model_name", model_name)]
    params += [("hardware", h) for h in hardware or []]
    params += [("tags", t) for t in tags or []]
    if batch_id:
        params.append(("batch_id", batch_id))
    if run_id:
        params.append(("run_id", run_id))
    if per_suite:
        params.append(("per_suite", "true"))
    try:
        parts = [("files", (p.name, p.read_bytes(), "application/xml")) for p in files]
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    headers = {"X-API-Key": api_key} if api_key else {}
    client = transport_client or httpx.Client(timeout=TIMEOUT_SECONDS)
    try:
        response = client.post(
            f"{url.rstrip('/')}/api/test/db/import/junit",
            params=params,
            files=parts,
            headers=headers,
        )
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 2
    finally:
        if transport_client is None:
            client.close()
    if response.status_code != 201:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        print(f"error: {response.status_code}: {detail}", file=sys.stderr)
        return 1
    body = response.json()
    for run in body["runs"]:
        print(
            f"{run['run_id']}  {run['source']}  passed {run['tests_passed']}  "
            f"failed {run['tests_failed']}  skipped {run['tests_skipped']}"
        )
    print(f"imported {len(body['runs'])} runs, {body['cases']} cases")
    return 0
