"""Several uvicorn processes on one database, started at once (the PostgreSQL e2e tests)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from tests.support import Server


@contextmanager
def started_together(
    folder: Path, count: int, env: dict[str, str] | None = None
) -> Iterator[list[Server]]:
    """Start `count` servers on the folder's databases at once; stop them all at the end.

    They all migrate at start-up: one holds the migration lock, the others wait and find the
    databases at head. Each writes its own log (server0.log, server1.log, ...).
    """
    servers = [Server(folder, env) for _ in range(count)]
    for i, server in enumerate(servers):
        server.log = folder / f"server{i}.log"
    with ThreadPoolExecutor(count) as pool:
        starting = [pool.submit(s.start, 120) for s in servers]
        try:
            for future in starting:
                future.result()
            yield servers
        finally:
            for server in servers:
                server.stop()
