"""A scratch repository and virtualenvs for suite tests: built once, with nothing of the server.

The virtualenv is made with `python -m venv --without-pip` (no network, about a second) and
gets copies of the installed distributions of pytest and httpx with their requirements, found
through importlib.metadata: it can run pytest and the recording plugin, never import the app.
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from packaging.requirements import Requirement


def _closure(names: list[str]) -> list[md.Distribution]:
    """Return the distributions `names` need, requirements included (extras left out)."""
    seen: dict[str, md.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        dist = md.distribution(name)
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def make_venv(folder: Path, packages: list[str]) -> Path:
    """Create a virtualenv holding copies of `packages` (and their needs); return its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    for dist in _closure(packages):
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if ".." in file.parts or not source.is_file() or "__pycache__" in file.parts:
                continue
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return python


PYPROJECT = """\
[project]
name = "mypkg"
version = "0.1.0"

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "--strict-markers -p no:cacheprovider"
markers = [
    "slow: takes a while",
    "device: needs the device under test",
]
filterwarnings = ["error"]
"""

ROOT_CONFTEST = """\
import pytest


def pytest_addoption(parser):
    parser.addoption("--model", default=None)
    parser.addoption("--device", default="cpu")


@pytest.fixture
def model_name(request):
    return request.config.getoption("--model")


@pytest.fixture
def device(request):
    return request.config.getoption("--device")
"""

PACKAGE = '''\
"""A tiny package under test."""


def scale(values, factor):
    return [v * factor for v in values]


def load(model_name, device):
    return {"model": model_name, "device": device}
'''

TESTS_CONFTEST = """\
import pytest

import mypkg


@pytest.fixture
def loaded(model_name, device):
    return mypkg.load(model_name, device)
"""

TESTS = """\
import os

import pytest

from mypkg import scale


def test_scale():
    assert scale([1, 2], 3) == [3, 6]


@pytest.mark.device
def test_loads_on_the_device(loaded, model_name, device, record_property):
    record_property("load_ms", 2.5)
    assert loaded == {"model": model_name, "device": device}
    assert os.environ["MYPKG_MODEL"] == model_name
    assert os.environ["MYPKG_DEVICE"] == device


@pytest.mark.slow
def test_marked_slow():
    assert True


def test_fails_on_purpose():
    assert scale([1], 2) == [3]


@pytest.mark.skip(reason="a skipped test the runner must record as skipped")
def test_skipped():
    pass
"""


def make_repo(root: Path) -> Path:
    """Write the scratch repository (its package, config, conftests and tests); return it."""
    (root / "mypkg").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "conftest.py").write_text(ROOT_CONFTEST)
    (root / "mypkg" / "__init__.py").write_text(PACKAGE)
    (root / "tests" / "conftest.py").write_text(TESTS_CONFTEST)
    (root / "tests" / "test_core.py").write_text(TESTS)
    return root


FAKE_TORCH = textwrap.dedent(
    '''\
    """A stand-in torch that reports one CUDA device (the probe only asks, never computes)."""

    class version:
        hip = None

    class cuda:
        @staticmethod
        def is_available():
            return True

        @staticmethod
        def device_count():
            return 1

    class backends:
        mps = None
    '''
)


def suites_toml(repo: Path, python: Path, bare: Path, extra_path: Path) -> str:
    """Return a suites file: the scratch repo, the same with a fake torch, and a bare venv."""
    return f"""\
[suites.mypkg]
description = "mypkg unit and device tests"
root = "{repo}"
python = "{python.parent.parent}"
paths = ["tests"]
env = {{ MYPKG_MODEL = "{{model_name}}", MYPKG_DEVICE = "{{hardware}}" }}
model_args = ["--model", "{{model_name}}"]
device_args = ["--device", "{{hardware}}"]
timeout = 120
devices = ["cpu", "cuda"]
models = ["tiny-bert", "tiny-gpt"]

[suites.mypkg-gpu]
root = "{repo}"
python = "{python}"
paths = ["tests"]
args = ["-m", "not slow"]
model_args = ["--model", "{{model_name}}"]
device_args = ["--device", "{{hardware}}"]

[suites.mypkg-gpu.env]
PYTHONPATH = "{extra_path}"
HF_TOKEN = "hf_not_for_readers"
MYPKG_MODEL = "{{model_name}}"
MYPKG_DEVICE = "{{hardware}}"

[suites.bare]
root = "{repo}"
python = "{bare}"
"""
