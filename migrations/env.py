"""Alembic environment: one per component (from `app.components.COMPONENTS`), DuckDB impl here."""

from __future__ import annotations

import logging.config
from typing import Any

from alembic import context
from sqlalchemy import MetaData, create_engine, event

import app.core.alembic_duckdb  # noqa: F401  (registers the DuckDB impl)

config = context.config
section = config.config_ini_section
component = config.get_main_option("component") or section
version_table = config.get_main_option("version_table") or f"alembic_version_{component}"

if config.config_file_name and not config.attributes.get("connection"):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _metadata() -> MetaData:
    from app.core.config import registered

    for comp in registered():
        if comp.name == component:
            return comp.metadata
    raise RuntimeError(f"unknown component section {component!r}")


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return str(url)
    from app.core.config import Settings

    return Settings().database_url(component)


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=_metadata(),
        version_table=version_table,
        compare_type=True,
        **kwargs,
    )


def run_offline() -> None:
    """Emit SQL without a database."""
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate through the app's connection when given one, else open the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url())
    if engine.dialect.name == "duckdb":

        @event.listens_for(engine, "connect")
        def _utc(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("SET TimeZone='UTC'")

    with engine.connect() as conn:
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
