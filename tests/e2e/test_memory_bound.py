"""A 1 GiB body, generated and streamed, is refused with 413; the server's peak RSS stays small."""

from __future__ import annotations

import select
import socket
from pathlib import Path

import httpx

from tests.support import Server

DB = "/api/test/db"
GIB = 1024**3
MIB = 1024**2
RSS_LIMIT = 300 * MIB


def peak_rss(pid: int) -> int:
    """Return a process's peak resident set size (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def frame(data: bytes, chunked: bool) -> bytes:
    """Return body bytes as sent: one chunk of a chunked body, or as they are."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data


def stream(port: int, path: str, total: int, chunked: bool = True) -> tuple[str, int]:
    """Send a generated body of `total` bytes (chunked, or with its Content-Length), MiB by MiB;
    stop once the server answers. Return the status line and the body bytes sent by then.
    """
    block = b"e" * MIB
    chunk = frame(block, chunked)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head + frame(b'{"run_id": "big", "error": "', chunked))
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(block)
        sock.settimeout(60)
        answer = sock.recv(65536).decode("latin-1")
    return (answer.splitlines() or [""])[0], sent


def test_a_1_gib_streamed_body_is_refused_and_peak_rss_stays_under_300_mb(
    tmp_path: Path,
) -> None:
    srv = Server(tmp_path).start()
    try:
        assert srv.proc is not None
        before = peak_rss(srv.proc.pid)  # imports, migrations, DuckDB: ~230 MiB measured
        # Chunked to a recording route (64 MiB limit): counted as it streams, cut at the limit.
        status, sent = stream(srv.port, f"{DB}/runs", GIB)
        assert " 413 " in status, status
        assert sent < 128 * MIB, "the server kept reading past its 64 MiB limit"
        # Chunked to a small route (4 MiB limit).
        status, sent = stream(srv.port, f"{DB}/run/x/complete", GIB)
        assert " 413 " in status and sent < 16 * MIB, (status, sent)
        # A declared 1 GiB Content-Length: refused before the body is read.
        status, sent = stream(srv.port, f"{DB}/import", GIB, chunked=False)
        assert " 413 " in status and sent < 16 * MIB, (status, sent)
        assert httpx.get(f"{srv.url}{DB}/run/big", timeout=10).status_code == 404
        assert httpx.get(f"{srv.url}/health", timeout=10).status_code == 200
        peak = peak_rss(srv.proc.pid)
        # Past 4 MiB the guard counts a body on disk, not in memory.
        assert peak - before < 32 * MIB, f"the refused bodies cost {(peak - before) / MIB:.0f} MiB"
        assert peak < RSS_LIMIT, (
            f"peak RSS {peak / MIB:.0f} MiB (before the bodies {before / MIB:.0f})"
        )
    finally:
        srv.stop()
