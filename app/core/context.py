"""What a component gets from the app: settings, its database, and the auth dependencies."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from fastapi import APIRouter, Header
from sqlalchemy import MetaData

from app.core.config import Settings
from app.core.db import Database, DatabaseRegistry
from app.core.errors import Forbidden, Unauthorized


class Runtime(Protocol):
    """What a plugged-in component contributes: routers and start/stop hooks."""

    routers: list[APIRouter]

    def start(self) -> None:
        """Start background work (after its database is migrated)."""

    def stop(self) -> None:
        """Stop background work."""


@dataclass(frozen=True)
class Component:
    """A pluggable component: its name, its tables, and how to build its runtime."""

    name: str
    title: str
    metadata: MetaData
    build: Callable[[AppContext], Runtime]


@dataclass
class AppContext:
    """Shared by every component of one app instance."""

    settings: Settings
    registry: DatabaseRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.registry = DatabaseRegistry(
            self.settings.pool_size, self.settings.max_overflow, self.settings.duckdb_memory_limit
        )

    def database(self, component: str) -> Database:
        """Return a component's database."""
        return self.registry.get(self.settings.database_url(component))

    def check_key(self, key: str | None) -> None:
        """Raise 401/403 unless `key` is a configured API key (no keys: open)."""
        keys = self.settings.api_keys
        if not keys:
            return
        if not key:
            raise Unauthorized("this operation needs an API key in the X-API-Key header")
        if not any(secrets.compare_digest(key, k) for k in keys):
            raise Forbidden("the X-API-Key sent is not a valid key")

    def require_write(self) -> Callable[..., None]:
        """Return a dependency that enforces API keys on writes, deletes, export and import."""

        def dependency(x_api_key: str | None = Header(default=None)) -> None:
            self.check_key(x_api_key)

        return dependency

    def require_read(self) -> Callable[..., None]:
        """Return a dependency that enforces API keys on reads when `protect_reads` is set."""

        def dependency(x_api_key: str | None = Header(default=None)) -> None:
            if self.settings.protect_reads:
                self.check_key(x_api_key)

        return dependency


@dataclass
class BasicRuntime:
    """A runtime made of routers and optional start/stop callables."""

    routers: list[APIRouter]
    on_start: list[Callable[[], None]] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> None:
        """Run the start hooks in order."""
        for hook in self.on_start:
            hook()

    def stop(self) -> None:
        """Run the stop hooks in reverse order."""
        for hook in reversed(self.on_stop):
            hook()
