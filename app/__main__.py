"""Command line: `python -m app serve|migrate|downgrade|revision` with every setting as a flag."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from app.core.config import KNOWN_COMPONENTS, Settings
from app.core.errors import StartupError


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in (
        "host",
        "port",
        "test_db_path",
        "generator_db_path",
        "test_database_url",
        "generator_database_url",
        "export_dir",
        "output_dir",
        "tests_dir",
        "results_dir",
        "components",
        "log_level",
    ):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "no_migrate", False):
        overrides["migrate_on_start"] = False
    return Settings(**overrides)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description="Accelerate Tracking")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--test-db-path", type=Path)
    common.add_argument("--generator-db-path", type=Path)
    common.add_argument("--test-database-url")
    common.add_argument("--generator-database-url")
    common.add_argument("--components", help=f"comma-separated, of {','.join(KNOWN_COMPONENTS)}")
    serve = sub.add_parser("serve", parents=[common], help="migrate, then serve the API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--export-dir", type=Path)
    serve.add_argument("--output-dir", type=Path)
    serve.add_argument("--tests-dir", type=Path)
    serve.add_argument("--results-dir", type=Path)
    serve.add_argument("--log-level")
    serve.add_argument("--no-migrate", action="store_true", help="do not migrate at start-up")
    sub.add_parser("migrate", parents=[common], help="bring every database to head")
    down = sub.add_parser("downgrade", parents=[common], help="take databases down a revision")
    down.add_argument("revision", nargs="?", default="base")
    upload = sub.add_parser("upload", help="send the runs the pytest plugin spooled")
    upload.add_argument("path", type=Path, help="the spool file (--tracking-spool)")
    upload.add_argument("--url", help="server to send to (default: the one each run names)")
    upload.add_argument("--api-key", help="X-API-Key (default: $ACCELERATE_TRACKING_API_KEY)")
    return parser


def _migrate(settings: Settings, revision: str | None = None) -> None:
    from app.core.context import AppContext
    from app.core.db import check_reachable
    from app.core.migrate import downgrade, revision_state, upgrade

    ctx = AppContext(settings)
    try:
        for name in settings.components:
            db = ctx.database(name)
            check_reachable(db)
            if revision is None:
                copy = upgrade(name, db, backup=settings.backup_before_migrate)
                if copy:
                    print(f"{name}: copied the database to {copy} first")
            else:
                downgrade(name, db, revision)
            state = revision_state(name, db)
            print(f"{name}: {state.current or 'base'} (head {state.head})")
    finally:
        ctx.registry.dispose()


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    args = _parser().parse_args(argv)
    if args.command == "upload":
        from pytest_accelerate_tracking.__main__ import upload

        return upload(args.path, url=args.url, api_key=args.api_key)
    try:
        settings = _settings(args)
        logging.basicConfig(
            level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("alembic").setLevel(logging.WARNING)
        if args.command == "migrate":
            _migrate(settings)
        elif args.command == "downgrade":
            _migrate(settings, args.revision)
        else:
            import uvicorn

            from app.main import create_app

            uvicorn.run(
                create_app(settings),
                host=settings.host,
                port=settings.port,
                log_level=settings.log_level,
                workers=1,
            )
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
