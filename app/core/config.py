"""Settings: one object, from flags or the environment (prefix APP_)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from app.core.context import Component

ENV_PREFIX = "APP_"


def registered() -> tuple[Component, ...]:
    """Return the plugged-in components (read at call time: `app.components.COMPONENTS`)."""
    from app import components

    return components.COMPONENTS


def component_names() -> list[str]:
    """Return the names of the plugged-in components, in order."""
    return [c.name for c in registered()]


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of the service; each field is also `APP_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    components: Annotated[list[str], NoDecode] = Field(default_factory=component_names)

    test_db_path: Path = Path("./data/test_runs.duckdb")
    generator_db_path: Path = Path("./data/generator_tasks.duckdb")
    test_database_url: str | None = None
    generator_database_url: str | None = None
    # Any component's database by name (JSON in the environment): what a component without
    # its own `<key>_db_path` / `<key>_database_url` fields is configured with.
    database_paths: dict[str, Path] = Field(default_factory=dict)
    database_urls: dict[str, str] = Field(default_factory=dict)

    export_dir: Path = Path("./data/exports")
    output_dir: Path = Path("./generated_tests")
    tests_dir: Path | None = None
    results_dir: Path = Path("./data/results")

    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    protect_reads: bool = False
    # --- keys with scopes, retention, backups (see README "Security", docs/api.md) ---
    # A file of hashed keys (`sha256:<hex> <scope> [name]` a line), re-read when it changes.
    api_keys_file: Path | None = None
    # Runs / tasks older than this many days are deleted periodically (unset: never).
    test_retention_days: int | None = Field(default=None, ge=1, le=36500)
    generator_retention_days: int | None = Field(default=None, ge=1, le=36500)
    # Runs / tasks with a tag of one of these names are never deleted by retention.
    retention_keep_tags: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["pinned"], max_length=64
    )
    retention_interval_seconds: int = Field(default=3600, ge=1, le=7 * 86400)
    backup_dir: Path = Path("./data/backups")
    # Host names served (comma-separated; "*" for any, "*.example.com" for subdomains). Unset:
    # the bind host, localhost, 127.0.0.1 and ::1 (see `served_hosts`): DNS rebinding refused.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list, max_length=100)

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

    # --- runner: suites, device probes, stale-run sweep (issue 12) ---
    # The operator's suites (TOML, [suites.NAME]); unset: only the built-in `generated` suite.
    suites_file: Path | None = None
    # How long an interpreter's answer to "which devices are there" is reused.
    device_probe_ttl: float = Field(default=30.0, ge=0.0, le=3600.0)
    # A run or task recorded from outside with no update for this long (or its own timeout,
    # when it has one) is ended as `error`; the sweep looks every `stale_sweep_interval` s.
    stale_after: int = Field(default=3600, ge=1, le=30 * 86_400)
    stale_sweep_interval: float = Field(default=30.0, ge=0.05, le=3600.0)
    # On PostgreSQL (several processes): a server whose runner wrote no heartbeat for this
    # long is gone, and another ends the runs and tasks it was executing (app.core.leases).
    lease_timeout: float = Field(default=30.0, ge=1.0, le=3600.0)

    @field_validator(
        "components", "api_keys", "allowed_hosts", "retention_keep_tags", mode="before"
    )
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
        entries = _split_csv(value)
        if isinstance(entries, list):
            for entry in entries:
                key, sep, scope = str(entry).rpartition(":")
                if sep and key and scope.isalpha() and scope not in ("read", "write", "admin"):
                    raise ValueError(f"a key's scope is {scope!r}; scopes are read, write, admin")
        return value

    @field_validator("components")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        known = component_names()
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(f"unknown components {unknown}; known: {', '.join(known)}")
        return value

    def served_hosts(self) -> list[str]:
        """Return the Host names the app answers: `allowed_hosts`, or the bind host and loopback."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        return list(dict.fromkeys([self.host, "localhost", "127.0.0.1", "::1"]))

    def database_url(self, component: str) -> str:
        """Return the SQLAlchemy URL of a component's database (KeyError: no such component)."""
        comp = next((c for c in registered() if c.name == component), None)
        if comp is None:
            raise KeyError(component)
        key = comp.settings_key
        url = getattr(self, f"{key}_database_url", None) or self.database_urls.get(component)
        path = (
            getattr(self, f"{key}_db_path", None)
            or self.database_paths.get(component)
            or Path("./data") / comp.default_db
        )
        return str(url or f"duckdb:///{Path(path).expanduser().resolve()}")

    @property
    def uses_keys(self) -> bool:
        """Whether API keys are configured at all (`APP_API_KEYS` or a keys file)."""
        return bool(self.api_keys) or self.api_keys_file is not None

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
            "backup": self.backup_dir,
        }.get(name)
        path = self.effective_tests_dir if name == "tests" else raw
        if path is None:
            raise KeyError(name)
        path = path.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path


_PLAIN = {
    "int_parsing": "not an integer",
    "int_from_float": "not an integer",
    "float_parsing": "not a number",
    "bool_parsing": "not a boolean (use true or false)",
    "json_invalid": "not valid JSON",
    "path_type": "not a path",
}


def _reason(error: dict[str, object]) -> str:
    kind = str(error.get("type", ""))
    ctx = error.get("ctx")
    limits = ctx if isinstance(ctx, dict) else {}
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind == "greater_than_equal":
        return f"must be at least {limits.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {limits.get('le')}"
    if kind == "string_pattern_mismatch":
        return f"must match {limits.get('pattern')}"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def config_error(exc: ValidationError) -> str:
    """Return a settings error as one line naming each variable: `APP_RUN_WORKERS=two: ...`."""
    parts = []
    for error in exc.errors():
        loc = error.get("loc") or ("?",)
        name = f"{ENV_PREFIX}{str(loc[0]).upper()}"
        value = error.get("input")
        shown = value if isinstance(value, str | int | float) else None
        head = name if shown is None else f"{name}={shown}"
        parts.append(f"{head}: {_reason(dict(error))}")
    return "; ".join(parts)
