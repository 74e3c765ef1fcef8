"""Shared test fixtures: the real annotation files (skipped when ../shared is absent), small threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "annotations"


def pytest_configure(config):
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _missing(message: str) -> None:
    """Skip on a developer machine without ../shared; under CI (``CI`` set) fail, so reader tests never
    vanish silently."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI needs ../shared/fixtures beside the clone")
    pytest.skip(message)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``../shared/fixtures/annotations`` (real annotation files); skips (fails under CI) when absent."""
    if not FIXTURES.is_dir():
        _missing(f"real annotation fixtures not found at {FIXTURES} (they live in ../shared, beside the repo)")
    return FIXTURES


def fixture_file(relative: str) -> Path:
    """Path of one real annotation file, skipping the test (failing under CI) when it is absent."""
    path = FIXTURES / relative
    if not path.is_file():
        _missing(f"real annotation fixture {relative} not found under {FIXTURES}")
    return path


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread than fighting for shared cores (restored after the test)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
