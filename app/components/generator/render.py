"""Render, check and safely write a model's generated pytest module (no database, no HTTP)."""

from __future__ import annotations

import ast
import io
import math
import os
import tempfile
import threading
import tokenize
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from app.components.generator.families import ALL_HARDWARE, Family
from app.core.errors import BadRequest, Conflict, Unprocessable

TEMPLATES_DIR = Path(__file__).parent / "templates"
LINE_LENGTH = 100
# Longest generated file name, in bytes: file systems allow 255, and the temp file beside it
# adds a prefix and a random suffix.
MAX_FILENAME_BYTES = 200

# template_context keys a caller may set, with their defaults and allowed ranges.
CONTEXT_LIMITS: dict[str, tuple[int, int, int]] = {
    "batch_size": (4, 1, 1024),
    "sequence_length": (8, 1, 8192),
    "repeats": (3, 1, 1000),
}


def py_literal(value: Any, indent: int = 0) -> str:
    """Return `value` as Python source that evaluates back to it (ASCII only, ruff-formatted)."""
    if isinstance(value, str):
        # ascii() escapes newlines, quotes and every non-ASCII character (bidi controls
        # included), so a model name can never end the literal or hide code.
        text = ascii(value)
        if text.startswith("'") and "'" not in value and '"' not in value:
            text = f'"{text[1:-1]}"'
        return text
    if value is None or isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no Python literal")
        return repr(value)
    if isinstance(value, tuple):
        items = [py_literal(item, indent) for item in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(value, list):
        return f"[{', '.join(py_literal(item, indent) for item in value)}]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        pad = " " * (indent + 4)
        body = "".join(
            f"{pad}{py_literal(key)}: {py_literal(item, indent + 4)},\n"
            for key, item in value.items()
        )
        return "{\n" + body + " " * indent + "}"
    raise TypeError(f"cannot render {type(value).__name__} as a Python literal")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["py"] = py_literal
    return env


def normalize_hardware(family: Family, hardware: Sequence[str] | None) -> tuple[str, ...]:
    """Return the hardware list lower-cased and de-duplicated, or raise 422 if unsupported."""
    devices = tuple(dict.fromkeys(h.strip().lower() for h in hardware or ("cpu",)))
    unknown = [h for h in devices if h not in ALL_HARDWARE]
    if unknown or not devices:
        raise Unprocessable(
            f"unknown hardware {unknown or list(hardware or [])}; "
            f"use any of: {', '.join(ALL_HARDWARE)}",
            code="unsupported_hardware",
            extra={"hardware": list(ALL_HARDWARE)},
        )
    unsupported = [h for h in devices if h not in family.hardware]
    if unsupported:
        raise Unprocessable(
            f"the {family.name} template does not support {', '.join(unsupported)}; "
            f"it supports {', '.join(family.hardware)}",
            code="unsupported_hardware",
            extra={"hardware": list(family.hardware)},
        )
    return devices


def normalize_context(template_context: Mapping[str, Any] | None) -> dict[str, int]:
    """Return the template options with defaults filled in, or raise 422 for a bad one."""
    given = dict(template_context or {})
    unknown = sorted(set(given) - set(CONTEXT_LIMITS))
    if unknown:
        raise Unprocessable(
            f"unknown template_context keys {unknown}; allowed: {', '.join(CONTEXT_LIMITS)}",
            code="invalid_template_context",
        )
    context: dict[str, int] = {}
    for key, (default, low, high) in CONTEXT_LIMITS.items():
        value = given.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise Unprocessable(
                f"template_context.{key} must be an integer from {low} to {high}",
                code="invalid_template_context",
            )
        context[key] = value
    return context


def render_test_module(
    model_name: str,
    family: Family,
    hardware: Sequence[str] | None = None,
    template_context: Mapping[str, Any] | None = None,
) -> str:
    """Render the family's template into the source of a pytest module for `model_name`."""
    devices = normalize_hardware(family, hardware)
    model_id_line = f"MODEL_ID = {py_literal(model_name)}"
    if len(model_id_line) > LINE_LENGTH:
        model_id_line += "  # noqa: E501"
    template = _environment().get_template(family.template)
    return template.render(
        family=family,
        model_id_line=model_id_line,
        hardware=devices,
        **normalize_context(template_context),
    )


def _string_spans(source: str) -> tuple[set[int], set[int]]:
    """Return the lines that open and the lines that continue multi-line strings (1-based)."""
    opening: set[int] = set()
    continuing: set[int] = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.STRING and token.end[0] > token.start[0]:
                opening.add(token.start[0])
                continuing.update(range(token.start[0] + 1, token.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        pass  # unparseable source: normalise every line, check_source reports the error
    return opening, continuing


def fix_syntax(source: str) -> str:
    """Normalise line endings, indentation tabs, trailing spaces and blank runs; then parse."""
    text = source.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    # Text inside a multi-line string is data: its tabs and trailing spaces stay as they are.
    opening, continuing = _string_spans(text)
    lines: list[str] = []
    blank_run = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if number in continuing:
            lines.append(line)
            blank_run = 0
            continue
        width = len(line) - len(line.lstrip(" \t"))
        line = line[:width].expandtabs(4) + line[width:]
        if number not in opening:
            line = line.rstrip()
        blank_run = blank_run + 1 if not line.strip() else 0
        if blank_run <= 2:
            lines.append(line)
    fixed = "\n".join(lines).strip("\n") + "\n"
    check_source(fixed)
    return fixed


# CPython 3.11.7 keeps the AST converter's recursion depth per interpreter, not per thread:
# two workers compiling at once fail with "AST constructor recursion depth mismatch".
_COMPILE_LOCK = threading.Lock()


def check_source(source: str, filename: str = "<generated>") -> None:
    """Parse and compile `source`; raise 422 naming the line when it is not valid Python."""
    try:
        with _COMPILE_LOCK:
            compile(ast.parse(source, filename=filename), filename, "exec")
    except SyntaxError as error:
        where = f"line {error.lineno}" if error.lineno else "unknown line"
        raise Unprocessable(
            f"generated source does not compile ({filename}, {where}): {error.msg}",
            code="invalid_source",
            extra={"line": error.lineno},
        ) from error
    except ValueError as error:  # e.g. NUL bytes
        raise Unprocessable(
            f"generated source does not compile ({filename}): {error}", code="invalid_source"
        ) from error


def safe_output_dir(root: Path, output_dir: str | None) -> Path:
    """Return `output_dir` resolved inside `root`; raise 400 for anything that escapes it."""
    base = Path(root).resolve()
    if not output_dir:
        return base
    if "\x00" in output_dir:
        raise BadRequest("output_dir contains a NUL byte", code="path_outside_root")
    # resolve() follows symlinks and `..`, so a link or a climb out of root is caught here.
    target = (base / output_dir).resolve()
    if not target.is_relative_to(base):
        raise BadRequest(
            f"output_dir {output_dir!r} is outside the output folder {str(base)!r}",
            code="path_outside_root",
        )
    return target


def write_atomically(path: Path, content: str, force: bool = False) -> None:
    """Write `content` to `path` through a temp file and a rename; 409 if it exists unforced."""
    path = Path(path)
    if path.is_dir():
        raise Conflict(f"{str(path)!r} is a directory", code="file_exists")
    if path.exists() and not force:
        raise Conflict(
            f"{str(path)!r} already exists; pass force=true to overwrite it", code="file_exists"
        )
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(0o644)
        if force:
            os.replace(tmp, path)
        else:
            # link() refuses to overwrite, so a file created since the check above survives.
            try:
                os.link(tmp, path)
            except FileExistsError as error:
                raise Conflict(
                    f"{str(path)!r} already exists; pass force=true to overwrite it",
                    code="file_exists",
                ) from error
            except OSError:  # a filesystem without hard links
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
