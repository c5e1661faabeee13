"""The code keeps the shape issue 15 set: short functions, typed route returns, B008 on."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
MAX_FUNCTION_LINES = 80
UNTYPED = {"Any", "typing.Any", "Any | None", "None | Any"}


def _functions(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _sources() -> list[Path]:
    paths = sorted(APP.rglob("*.py"))
    assert len(paths) > 20, "the walk found too few modules: is APP right?"
    return paths


def test_no_function_in_app_is_over_80_lines() -> None:
    too_long = [
        f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)"
        for path in _sources()
        for fn in _functions(path)
        if fn.end_lineno is not None and fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert too_long == []


def test_no_router_function_returns_any() -> None:
    routers = [p for p in _sources() if p.name.endswith(("router.py", "routes.py"))]
    assert routers, "no router modules found"
    untyped = [
        f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}"
        for path in routers
        for fn in _functions(path)
        if fn.returns is None or ast.unparse(fn.returns) in UNTYPED
    ]
    assert untyped == []


def test_ruff_b008_is_not_ignored_and_mypy_is_strict() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lint = config["tool"]["ruff"]["lint"]
    assert "B" in lint["select"]
    assert "B008" not in lint.get("ignore", [])
    assert all("B008" not in codes for codes in lint.get("per-file-ignores", {}).values())
    assert config["tool"]["mypy"]["strict"] is True
