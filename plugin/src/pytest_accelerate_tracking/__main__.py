"""`python -m pytest_accelerate_tracking upload SPOOL [--url URL] [--api-key KEY]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pytest_accelerate_tracking.sender import upload_spool


def upload_command(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Send the runs of a spool file; exit 0 when nothing is left in it."""
    parser = argparse.ArgumentParser(prog=prog, description="send runs a test session spooled")
    parser.add_argument("path", type=Path, help="the spool file (--tracking-spool)")
    parser.add_argument("--url", default=None, help="server to send to (default: each run's)")
    parser.add_argument(
        "--api-key",
        default=None,
        help="X-API-Key (default: $ACCELERATE_TRACKING_API_KEY)",
    )
    args = parser.parse_args(argv)
    return upload(args.path, url=args.url, api_key=args.api_key)


def upload(path: Path, *, url: str | None = None, api_key: str | None = None) -> int:
    """Send a spool file's runs, print one line; 0 when none is left (also `python -m app`)."""
    api_key = api_key or os.environ.get("ACCELERATE_TRACKING_API_KEY")
    if not path.exists():
        print(f"accelerate-tracking: no spool file at {path}", file=sys.stderr)
        return 2
    result = upload_spool(path, url=url, api_key=api_key)
    for error in result.errors:
        print(f"accelerate-tracking: {error}", file=sys.stderr)
    print(
        f"accelerate-tracking: sent {len(result.sent)} run(s) from {path}"
        + (f"; {result.kept} left in it" if result.kept else "; the spool is now empty")
    )
    return 1 if result.kept else 0


def main(argv: list[str] | None = None) -> int:
    """Dispatch the one subcommand, `upload`."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "upload":
        print("usage: python -m pytest_accelerate_tracking upload SPOOL [--url URL]")
        return 2
    return upload_command(argv[1:], prog="python -m pytest_accelerate_tracking upload")


if __name__ == "__main__":
    raise SystemExit(main())
