"""What a component is (the registry entry) and what it gets from the app (the shared context)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fastapi import APIRouter
from sqlalchemy import MetaData

from app.core.config import Settings
from app.core.db import Database, DatabaseRegistry
from app.core.keys import KeyRing, Scope
from app.core.live import EventHub


class Worker(Protocol):
    """Background work a component runs while the app serves (a runner)."""

    def start(self) -> None:
        """Start background work (after its database is migrated)."""

    def stop(self) -> None:
        """Stop background work."""


@dataclass
class Runtime:
    """One component's live parts in one app: its runner and event hub (on `app.state`)."""

    runner: Worker | None = None
    hub: EventHub | None = None

    def start(self) -> None:
        """Start the event relay and the runner, if any."""
        if self.hub is not None and self.hub.relay is not None:
            self.hub.relay.start()
        if self.runner is not None:
            self.runner.start()

    def stop(self) -> None:
        """Stop the runner and the event relay, if any."""
        if self.runner is not None:
            self.runner.stop()
        if self.hub is not None and self.hub.relay is not None:
            self.hub.relay.stop()


def no_runtime(_ctx: AppContext) -> Runtime:
    """Build the runtime of a component with no background work."""
    return Runtime()


def with_hub(runner: Callable[[AppContext, EventHub], Worker]) -> Callable[[AppContext], Runtime]:
    """Return a component's `build`: a fresh event hub and a runner publishing to it."""

    def build(ctx: AppContext) -> Runtime:
        hub = EventHub()
        worker = runner(ctx, hub)
        component = getattr(worker, "component", None)
        if component is not None and ctx.database(component).is_postgres:
            from app.core.pg_events import PgRelay  # live events across server processes

            hub.relay = PgRelay(ctx.database(component), component, hub)
        return Runtime(runner=worker, hub=hub)

    return build


VERSIONS = Path(__file__).resolve().parents[2] / "migrations" / "versions"


def versions_of(name: str) -> Path:
    """Return a component's Alembic version folder (`migrations/versions/<name>`)."""
    return VERSIONS / name


@dataclass(frozen=True)
class Component:
    """A pluggable component: the one registry entry every part of the app iterates over.

    `settings_key` names its settings (`APP_<KEY>_DB_PATH`, `APP_<KEY>_DATABASE_URL`),
    `migrations` is its Alembic version folder (version table `alembic_version_<name>`),
    `routers` are its module-level routers and `build` makes its runner and event hub.
    """

    name: str
    title: str
    metadata: MetaData
    settings_key: str
    migrations: Path
    default_db: str
    routers: tuple[APIRouter, ...] = ()
    build: Callable[[AppContext], Runtime] = no_runtime


@dataclass
class AppContext:
    """Shared by every component of one app instance."""

    settings: Settings
    registry: DatabaseRegistry = field(init=False)
    keys: KeyRing = field(init=False)
    _urls: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.keys = KeyRing(self.settings.api_keys, self.settings.api_keys_file)
        self.registry = DatabaseRegistry(
            self.settings.pool_size, self.settings.max_overflow, self.settings.duckdb_memory_limit
        )

    def database(self, component: str) -> Database:
        """Return a component's database (its URL worked out once: resolving a file's path
        costs syscalls, and every request asks; 3.5 % of a small write's time in py-spy)."""
        url = self._urls.get(component)
        if url is None:
            url = self._urls[component] = self.settings.database_url(component)
        return self.registry.get(url)

    def check_key(self, key: str | None, scope: Scope = "write") -> None:
        """Raise 401/403 unless `key` is a configured key of `scope` or above (no keys: open)."""
        self.keys.check(key, scope)
