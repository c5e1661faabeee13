"""Suites: what the runner may run, named by the operator in a TOML file (APP_SUITES_FILE).

A suite is a project root run under its own pytest configuration and conftest files, with its
own interpreter (or virtualenv), test paths, extra arguments and environment; `{model_name}`,
`{hardware}`, `{test_type}` and `{run_id}` in its arguments and environment values say how the
model and the device are passed. The generated-tests folder is the built-in suite `generated`
(one `test_<slug>.py` per model, run under the runner's own minimal pytest config). A request
picks a suite by name and a model: never a path, an interpreter or an argument.
"""

from __future__ import annotations

import os
import re
import shutil
import string
import sys
import tempfile
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.core.config import Settings
from app.core.errors import AppError, BadRequest, Conflict, Forbidden, NotFound
from app.core.naming import module_filename

DEFAULT_SUITE = "generated"
"""The built-in suite: the generated-tests folder, one module per model."""
MAX_FILE_BYTES = 1024 * 1024
"""A suites file larger than this is refused."""
MAX_SUITES = 100
"""At most this many suites in one file."""
MAX_ITEMS = 64
"""At most this many paths, arguments, environment variables, devices per suite."""
MAX_MODELS = 1000
"""At most this many models listed per suite."""
PLACEHOLDERS = frozenset({"model_name", "hardware", "test_type", "run_id"})
"""What `{...}` in a suite's arguments and environment values may name."""
# Generated suites run under their own minimal config, not the project's pytest settings.
ISOLATED_INI = (
    "[pytest]\naddopts = -p no:cacheprovider -p no:hypothesispytest\njunit_family = xunit1\n"
)
SUITE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASS|AUTH|CREDENTIAL|COOKIE", re.IGNORECASE)
"""Environment variables whose values GET /suites never shows."""
REDACTED = "***"


class SuiteError(AppError):
    """The suites file cannot be used (the operator must fix it): 503 `suites_file_invalid`."""

    status_code = 503
    code = "suites_file_invalid"


def _template_names(text: str) -> set[str]:
    """Return the placeholders a template names (raises ValueError on a malformed template)."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def _check_template(text: str) -> str:
    try:
        names = _template_names(text)
    except ValueError as exc:
        raise ValueError(
            f"{text!r} is not a valid template ({exc}); write {{{{ for a brace"
        ) from None
    unknown = names - PLACEHOLDERS
    if unknown:
        raise ValueError(
            f"{text!r} names {sorted(unknown)}; known placeholders: {sorted(PLACEHOLDERS)}"
        )
    return text


class SuiteConfig(BaseModel):
    """One suite as the operator writes it in the suites file (unknown keys refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field("", max_length=1024)
    root: str = Field(..., min_length=1, max_length=4096)
    python: str | None = Field(None, max_length=4096)
    paths: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    args: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    env: dict[str, str] = Field(default_factory=dict, max_length=MAX_ITEMS)
    model_args: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    device_args: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    timeout: int | None = Field(None, ge=1, le=86_400)
    devices: list[str] | None = Field(None, max_length=MAX_ITEMS)
    models: list[str] | None = Field(None, max_length=MAX_MODELS)

    @field_validator("args", "model_args", "device_args", "paths")
    @classmethod
    def _templates(cls, value: list[str]) -> list[str]:
        for item in value:
            if len(item) > 4096:
                raise ValueError("an item is longer than 4096 characters")
            _check_template(item)
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", key):
                raise ValueError(f"{key!r} is not an environment variable name")
            if len(item) > 4096:
                raise ValueError(f"{key} is longer than 4096 characters")
            _check_template(item)
        return value


@dataclass(frozen=True)
class Launch:
    """How one device's pass of a run starts: interpreter, folder, pytest arguments, env."""

    python: str
    cwd: Path
    args: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class Suite:
    """A suite the runner can run: the built-in one, or one from the suites file."""

    name: str
    description: str
    root: Path
    python: str
    paths: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    model_args: tuple[str, ...] = ()
    device_args: tuple[str, ...] = ()
    timeout: int | None = None
    devices: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    builtin: bool = False

    def literal_env(self) -> dict[str, str]:
        """Return the environment values that name no placeholder (what a probe runs with)."""
        return {k: v for k, v in self.env if not _template_names(v)}

    def check_device(self, device: str) -> None:
        """Refuse a device this suite may not use (400 `device_not_allowed`)."""
        if self.devices is None:
            return
        backend = device.split(":", 1)[0]
        if device not in self.devices and backend not in self.devices:
            raise BadRequest(
                f"suite {self.name!r} may not use device {device!r}; "
                f"allowed: {', '.join(self.devices)}",
                code="device_not_allowed",
            )

    def check_model(self, model_name: str) -> Path | None:
        """Refuse a model this suite cannot run; for the built-in suite return its module."""
        if self.builtin:
            path = self.root / module_filename(model_name)
            if not path.is_file():
                raise NotFound(
                    f"no test module for model {model_name!r}: expected {path.name} in "
                    f"{self.root} (generate one with POST /api/generator/model, or put it there)",
                    code="no_test_module",
                )
            return path
        if self.models is not None and model_name not in self.models:
            raise NotFound(
                f"suite {self.name!r} does not run model {model_name!r}; "
                f"it runs: {', '.join(self.models) or 'no model'}",
                code="model_not_in_suite",
            )
        return None

    def launch(
        self, model_name: str, device: str, test_type: str, run_id: str, workdir: Path
    ) -> Launch:
        """Return how to start this suite's pytest for one device of a run."""
        values = {
            "model_name": model_name,
            "hardware": device,
            "test_type": test_type,
            "run_id": run_id,
        }
        env = {k: v.format_map(values) for k, v in self.env}
        if self.builtin:
            path = self.check_model(model_name)
            assert path is not None
            ini = workdir / "pytest.ini"
            ini.write_text(ISOLATED_INI)
            args = [str(path.resolve()), "-c", str(ini), "--rootdir", str(path.parent)]
            return Launch(self.python, path.parent, args, env)
        templated = [*self.paths, *self.model_args, *self.device_args, *self.args]
        args = [item.format_map(values) for item in templated]
        return Launch(self.python, self.root, args, env)

    def describe(self) -> dict[str, Any]:
        """Return the suite as GET /suites shows it (the operator's settings, as resolved)."""
        return {
            "name": self.name,
            "description": self.description,
            "builtin": self.builtin,
            "root": str(self.root),
            "python": self.python,
            "paths": list(self.paths),
            "args": list(self.args),
            "env": {k: REDACTED if SECRET_NAME.search(k) else v for k, v in self.env},
            "model_args": list(self.model_args),
            "device_args": list(self.device_args),
            "timeout": self.timeout,
            "devices": list(self.devices) if self.devices is not None else None,
            "models": list(self.models) if self.models is not None else None,
        }


def resolve_python(value: str | None, base: Path) -> str:
    """Return the interpreter a suite names: a file, a virtualenv folder, or a command name."""
    if not value:
        return sys.executable
    path = Path(os.path.expanduser(value))
    if not path.is_absolute() and (os.sep in value or value.startswith(".")):
        path = base / path
    if path.is_dir():
        for candidate in (path / "bin" / "python", path / "Scripts" / "python.exe"):
            if candidate.exists():
                return str(candidate)
        return str(path / "bin" / "python")  # missing: the probe says so clearly
    if path.is_absolute() or os.sep in value:
        return str(path)
    return shutil.which(value) or value


def builtin_suite(settings: Settings) -> Suite:
    """Return the built-in suite: the generated-tests folder, run by the server's interpreter."""
    return Suite(
        name=DEFAULT_SUITE,
        description="the generated-tests folder: test_<slug>.py per model",
        root=settings.effective_tests_dir,
        python=sys.executable,
        timeout=settings.default_run_timeout,
        builtin=True,
    )


def parse_suites(text: str, base: Path) -> dict[str, Suite]:
    """Return the suites a suites file defines (raises SuiteError naming what is wrong)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"the suites file is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"suites"})
    if unknown:
        raise SuiteError(f"the suites file has unknown top-level keys {unknown}; use [suites.NAME]")
    table = data.get("suites", {})
    if not isinstance(table, dict):
        raise SuiteError("`suites` must be a table of [suites.NAME] sections")
    if len(table) > MAX_SUITES:
        raise SuiteError(f"the suites file defines {len(table)} suites; the limit is {MAX_SUITES}")
    suites: dict[str, Suite] = {}
    for name, raw in table.items():
        if not re.fullmatch(SUITE_NAME, name) or name == DEFAULT_SUITE:
            raise SuiteError(
                f"suite name {name!r} must match {SUITE_NAME} and not be {DEFAULT_SUITE!r}"
            )
        try:
            conf = SuiteConfig.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or name}: {e['msg']}" for e in exc.errors()
            )
            raise SuiteError(f"suite {name!r}: {problems}") from None
        root = Path(os.path.expanduser(conf.root))
        root = (root if root.is_absolute() else base / root).resolve()
        if not root.is_dir():
            raise SuiteError(f"suite {name!r}: root {root} is not a folder")
        suites[name] = Suite(
            name=name,
            description=conf.description,
            root=root,
            python=resolve_python(conf.python, base),
            paths=tuple(conf.paths),
            args=tuple(conf.args),
            env=tuple(conf.env.items()),
            model_args=tuple(conf.model_args),
            device_args=tuple(conf.device_args),
            timeout=conf.timeout,
            devices=tuple(conf.devices) if conf.devices is not None else None,
            models=tuple(conf.models) if conf.models is not None else None,
        )
    return suites


class SuiteBook:
    """The suites of one suites file, read again whenever the file changes (no restart)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path.expanduser().resolve() if path is not None else None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._suites: dict[str, Suite] = {}

    def configured(self) -> dict[str, Suite]:
        """Return the suites of the file (none without one); SuiteError when it is unusable."""
        if self.path is None:
            return {}
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise SuiteError(f"cannot read the suites file {self.path}: {exc.strerror}") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                if stat.st_size > MAX_FILE_BYTES:
                    raise SuiteError(f"the suites file is larger than {MAX_FILE_BYTES} bytes")
                text = self.path.read_text(encoding="utf-8")
                self._suites = parse_suites(text, self.path.parent)
                self._stamp = stamp
            return dict(self._suites)


_BOOKS: dict[Path | None, SuiteBook] = {}
_BOOKS_LOCK = threading.Lock()


def book_for(settings: Settings) -> SuiteBook:
    """Return the (shared) book of the settings' suites file."""
    key = settings.suites_file.expanduser().resolve() if settings.suites_file else None
    with _BOOKS_LOCK:
        if key not in _BOOKS:
            _BOOKS[key] = SuiteBook(key)
        return _BOOKS[key]


def all_suites(settings: Settings) -> dict[str, Suite]:
    """Return every suite: the built-in one first, then the suites file's."""
    return {DEFAULT_SUITE: builtin_suite(settings), **book_for(settings).configured()}


def get_suite(settings: Settings, name: str) -> Suite:
    """Return a suite by name, or raise 404 `unknown_suite` listing the known ones."""
    suites = all_suites(settings)
    if name not in suites:
        raise NotFound(f"no suite named {name!r}; known: {', '.join(suites)}", code="unknown_suite")
    return suites[name]


_WRITE_LOCK = threading.Lock()


def _check_writable(settings: Settings, name: str) -> Path:
    """Return the suites file PUT may write, or raise why it may not."""
    if not settings.uses_keys:
        raise Forbidden(
            "suites are edited over HTTP only with API keys set (an admin key); "
            "without keys, edit the suites file",
            code="suites_read_only",
        )
    if settings.suites_file is None:
        raise Conflict("no suites file is configured (APP_SUITES_FILE)", code="no_suites_file")
    if not re.fullmatch(SUITE_NAME, name) or name == DEFAULT_SUITE:
        raise BadRequest(
            f"suite name {name!r} must match {SUITE_NAME} and not be {DEFAULT_SUITE!r}",
            code="invalid_suite_name",
        )
    return settings.suites_file.expanduser().resolve()


def put_suite(settings: Settings, name: str, conf: SuiteConfig) -> Suite:
    """Create or replace one suite in the suites file (atomically; comments are not kept)."""
    path = _check_writable(settings, name)
    with _WRITE_LOCK:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SuiteError(f"the suites file is not valid TOML: {exc}") from None
        table = data.setdefault("suites", {})
        table[name] = conf.model_dump(exclude_none=True, exclude_defaults=True) | {
            "root": conf.root
        }
        new_text = tomli_w.dumps(data)
        if len(new_text.encode()) > MAX_FILE_BYTES:
            raise BadRequest(f"the suites file would exceed {MAX_FILE_BYTES} bytes", code="too_big")
        try:
            suites = parse_suites(new_text, path.parent)
        except SuiteError as exc:  # what the client sent cannot run here (a missing root, ...)
            raise BadRequest(exc.detail, code="invalid_suite") from None
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".suites-", suffix=".toml")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(new_text)
        os.replace(tmp, path)
    return suites[name]
