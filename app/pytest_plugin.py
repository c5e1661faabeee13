"""pytest plugin: hardware and model-source options, test-type markers, run tracking."""

from __future__ import annotations

import os

import pytest

TEST_TYPE_MARKERS = ("basic", "comprehensive", "fault_tolerance")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the options generated suites and the runner rely on."""
    group = parser.getgroup("accelerate-tracking")
    group.addoption("--hardware", default="cpu", help="device the suite runs on (cpu, cuda, ...)")
    group.addoption(
        "--model-source",
        default="auto",
        choices=("auto", "hub", "tiny"),
        help="load the hub model, or build a tiny random one (auto: tiny when offline)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the test-type markers."""
    config.addinivalue_line("markers", "basic: quick checks every run does")
    config.addinivalue_line("markers", "comprehensive: the full suite (includes basic)")
    config.addinivalue_line("markers", "fault_tolerance: error handling and cleanup checks")


@pytest.fixture
def hardware(request: pytest.FixtureRequest) -> str:
    """Return the device this session runs on."""
    return str(request.config.getoption("--hardware"))


@pytest.fixture
def model_source(request: pytest.FixtureRequest) -> str:
    """Return "hub" or "tiny": where the suite loads its model from."""
    source = str(request.config.getoption("--model-source"))
    if source != "auto":
        return source
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    return "tiny" if offline or os.environ.get("APP_MODEL_SOURCE") != "hub" else "hub"
