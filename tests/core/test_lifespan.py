"""The lifespan is total: any start-up or shutdown failure is one sentence; state on app.state."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from app.core.config import Settings
from app.core.context import Runtime
from app.main import TrackingApp, create_app


def lifespan(app: TrackingApp) -> list[dict[str, Any]]:
    """Drive the ASGI lifespan protocol once (start-up, then shutdown); return what was sent."""
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return sent


def raising(message: str) -> Any:
    """Return a callable that raises a plain (non-AppError) exception."""

    def hook() -> None:
        raise ValueError(message)

    return hook


def test_app_state_holds_context_components_and_runtimes(settings: Settings) -> None:
    app = create_app(settings)
    assert app.state.ctx.settings is settings
    assert [c.name for c in app.state.components] == ["test_suite", "generator"]
    assert all(isinstance(r, Runtime) for r in app.state.runtimes.values())
    assert app.state.runtimes["generator"].hub is not None
    assert app.state.started == []


def test_a_plain_exception_at_start_up_is_one_sentence_and_startup_failed(
    settings: Settings,
) -> None:
    app = create_app(settings)
    app.state.runtimes["generator"].start = raising("the pool\ncould not start")
    sent = lifespan(app)
    assert sent == [
        {"type": "lifespan.startup.failed", "message": "ValueError: the pool could not start"}
    ]
    # What had started is stopped again and the databases are closed.
    assert app.state.started == []


def test_a_failing_shutdown_reports_shutdown_failed_and_still_closes_the_rest(
    settings: Settings,
) -> None:
    app = create_app(settings)
    stopped: list[str] = []
    suite = app.state.runtimes["test_suite"]
    real_stop = suite.stop

    def stop_and_note() -> None:
        real_stop()
        stopped.append("test_suite")

    generator = app.state.runtimes["generator"]
    generator_stop = generator.stop

    def stop_then_fail() -> None:
        generator_stop()
        raise ValueError("the pool hung")

    suite.stop = stop_and_note
    generator.stop = stop_then_fail
    sent = lifespan(app)
    assert sent[0] == {"type": "lifespan.startup.complete"}
    assert sent[1] == {"type": "lifespan.shutdown.failed", "message": "ValueError: the pool hung"}
    assert stopped == ["test_suite"]


def test_a_clean_start_and_stop_completes_both_phases(settings: Settings) -> None:
    sent = lifespan(create_app(settings))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_a_migration_failure_keeps_its_startup_error_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.main as main

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(main, "upgrade", broken)
    app = create_app(Settings(test_db_path=tmp_path / "t.duckdb", components=["test_suite"]))
    sent = lifespan(app)
    assert sent == [
        {
            "type": "lifespan.startup.failed",
            "message": "migrating the test_suite database failed: disk full",
        }
    ]
