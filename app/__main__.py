"""Command line: `python -m app serve|migrate|downgrade|backup|restore|copy|hash-key|...`."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.core.config import Settings, component_names, config_error
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
    common.add_argument("--components", help=f"comma-separated, of {','.join(component_names())}")
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
    gate = sub.add_parser("gate", help="compare two runs or batches; exit 1 on a failing verdict")
    gate.add_argument("--base", required=True, help="run id or batch id")
    gate.add_argument("--head", required=True, help="run id or batch id")
    gate.add_argument("--fail-on", default="new_failures", help="e.g. new_failures,regression:5%%")
    gate.add_argument("--url", help="the server (default http://<host>:<port> of the settings)")
    gate.add_argument("--api-key", help="sent as X-API-Key")
    _junit_parser(sub)
    _backup_parser(sub, common)
    upload = sub.add_parser("upload", help="send the runs the pytest plugin spooled")
    upload.add_argument("path", type=Path, help="the spool file (--tracking-spool)")
    upload.add_argument("--url", help="server to send to (default: the one each run names)")
    upload.add_argument("--api-key", help="X-API-Key (default: $ACCELERATE_TRACKING_API_KEY)")
    return parser


def _junit_parser(sub: Any) -> None:
    junit = sub.add_parser("import-junit", help="send JUnit XML files to a running server")
    junit.add_argument("files", nargs="+", type=Path, metavar="FILE")
    junit.add_argument("--model", required=True, help="model_name of the runs")
    junit.add_argument("--hardware", action="append", help="repeatable; default cpu")
    junit.add_argument("--tag", action="append", help="name=value, repeatable")
    junit.add_argument("--batch-id")
    junit.add_argument("--run-id")
    junit.add_argument("--per-suite", action="store_true", help="one run per <testsuite>")
    junit.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
    junit.add_argument("--api-key", help="X-API-Key, when the server has keys")


def _backup_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    backup = sub.add_parser(
        "backup", parents=[common], help="copy the databases into a folder (safe while serving)"
    )
    backup.add_argument("path", type=Path, help="folder for the copies and manifest.json")
    backup.add_argument("--url", help="the running server (default http://<host>:<port>)")
    backup.add_argument("--api-key", help="an admin key, when the server has keys")
    backup.add_argument("--force", action="store_true", help="overwrite copies in the folder")
    restore = sub.add_parser(
        "restore", parents=[common], help="copy a backup folder over the databases (server stopped)"
    )
    restore.add_argument("path", type=Path, help="a folder `backup` wrote")
    restore.add_argument("--force", action="store_true", help="replace existing databases")
    sub.add_parser("hash-key", add_help=False, help="print a keys-file line for a key")
    _copy_parser(sub)


def _copy_parser(sub: Any) -> None:
    copy = sub.add_parser(
        "copy",
        help="copy a history into another database (resumable; e.g. DuckDB to PostgreSQL)",
        description="Copy every component a database holds into another one, table by table in "
        "batches; run it again after an interruption and it continues. The source is read-only "
        "(stop the server that owns a DuckDB file first); the target is migrated to head.",
    )
    copy.add_argument("--from", dest="source", required=True, metavar="URL", help="source URL")
    copy.add_argument("--to", dest="target", required=True, metavar="URL", help="target URL")
    copy.add_argument(
        "--component", action="append", help="only this component (repeatable; default: all)"
    )
    copy.add_argument("--batch", type=int, default=50_000, help="rows per transaction")


def _copy(args: argparse.Namespace) -> int:
    from app.components import COMPONENTS
    from app.core.copy import CopyError, ProgressBar, copy_database

    began = time.perf_counter()
    try:
        done = copy_database(
            args.source,
            args.target,
            COMPONENTS,
            only=args.component or (),
            batch_rows=args.batch,
            progress=ProgressBar(),
        )
    except CopyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = sum(t.copied for t in done)
    print(f"copied {rows:,} rows in {len(done)} tables in {time.perf_counter() - began:.1f} s")
    return 0


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    from app.core.backup import CliError, backup_cli, restore_cli

    try:
        if args.command == "backup":
            done = backup_cli(
                settings,
                args.path,
                settings.components,
                url=args.url,
                api_key=args.api_key,
                force=args.force,
            )
        else:
            done = restore_cli(settings, args.path, settings.components, force=args.force)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in done:
        print(line)
    return 0


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


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket, or raise StartupError naming the address taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP by name: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto
    # says TCP, and accepted sockets inherit it. With proto 0 every keep-alive answer waited
    # for the client's delayed ACK: ~40 ms a request (measured: /health 56 ms against 13 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _serve(settings: Settings) -> int:
    import uvicorn

    from app.main import create_app

    # The port is taken before any database is opened or migrated: a port in use is found
    # at once, not after a migration (uvicorn binds only after the lifespan start-up).
    sock = bind(settings.host, settings.port)
    config = uvicorn.Config(
        create_app(settings), log_level=settings.log_level, workers=1, lifespan="on"
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 3


def main(argv: list[str] | None = None, client: Any = None) -> int:
    """Run the command line (`client`: an httpx-compatible client for `gate`, for tests)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hash-key"]:
        from app.core.keys import hash_key_main

        return hash_key_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "gate":
        from app.gate import run_gate

        return run_gate(args, client)
    if args.command == "import-junit":
        from app.components.test_suite.junit_cli import upload

        return upload(
            args.files,
            model_name=args.model,
            hardware=args.hardware,
            tags=args.tag,
            batch_id=args.batch_id,
            run_id=args.run_id,
            per_suite=args.per_suite,
            url=args.url,
            api_key=args.api_key,
        )
    if args.command == "copy":
        return _copy(args)
    if args.command == "upload":
        from pytest_accelerate_tracking.__main__ import upload as upload_spool

        return upload_spool(args.path, url=args.url, api_key=args.api_key)
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
        elif args.command in ("backup", "restore"):
            return _backup(args, settings)
        else:
            return _serve(settings)
    except ValidationError as exc:
        print(f"error: {config_error(exc)}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
