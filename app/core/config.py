"""Settings: one object, from flags or the environment (prefix APP_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

KNOWN_COMPONENTS = ("test_suite", "generator")


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of the service; each field is also `APP_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="APP_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    components: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(KNOWN_COMPONENTS)
    )

    test_db_path: Path = Path("./data/test_runs.duckdb")
    generator_db_path: Path = Path("./data/generator_tasks.duckdb")
    test_database_url: str | None = None
    generator_database_url: str | None = None

    export_dir: Path = Path("./data/exports")
    output_dir: Path = Path("./generated_tests")
    tests_dir: Path | None = None
    results_dir: Path = Path("./data/results")

    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    protect_reads: bool = False

    # Request bodies: documents (recording a run or task, cases, metrics, results, imports) may
    # be large; every other body is small. Larger ones get a 413 before they are read whole.
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=4 * 1024**3)
    max_small_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=1024**3)

    migrate_on_start: bool = True
    backup_before_migrate: bool = True

    run_workers: int = Field(default=2, ge=1, le=32)
    generator_workers: int = Field(default=2, ge=1, le=32)
    default_run_timeout: int = Field(default=300, ge=1)

    # DuckDB's memory limit per database (its default is 80% of RAM): keeps the server's RSS
    # bounded during large exports and ingests; DuckDB spills to disk past it.
    duckdb_memory_limit: str | None = Field(
        default="256MB", pattern=r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"
    )
    pool_size: int = Field(default=10, ge=1)
    max_overflow: int = Field(default=20, ge=0)
    log_level: str = "info"

    @field_validator("components", "api_keys", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _no_blank_keys(cls, value: object) -> object:
        # `APP_API_KEYS=" , "` must not silently mean "no keys": that would open the server.
        if isinstance(value, str) and value.strip() and not _split_csv(value):
            raise ValueError("holds only blank keys; unset it for an open server")
        if isinstance(value, list) and any(not str(k).strip() for k in value):
            raise ValueError("holds a blank key")
        return value

    @field_validator("components")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in KNOWN_COMPONENTS]
        if unknown:
            raise ValueError(f"unknown components {unknown}; known: {', '.join(KNOWN_COMPONENTS)}")
        return value

    def database_url(self, component: str) -> str:
        """Return the SQLAlchemy URL of a component's database."""
        if component == "test_suite":
            url, path = self.test_database_url, self.test_db_path
        elif component == "generator":
            url, path = self.generator_database_url, self.generator_db_path
        else:
            raise KeyError(component)
        return url or f"duckdb:///{path.expanduser().resolve()}"

    @property
    def effective_tests_dir(self) -> Path:
        """Return the folder runs look for test modules in (default: the output folder)."""
        return (self.tests_dir or self.output_dir).expanduser().resolve()

    def folder(self, name: str) -> Path:
        """Return a configured folder as an absolute path, creating it when missing."""
        raw = {
            "export": self.export_dir,
            "output": self.output_dir,
            "results": self.results_dir,
        }.get(name)
        path = self.effective_tests_dir if name == "tests" else raw
        if path is None:
            raise KeyError(name)
        path = path.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
