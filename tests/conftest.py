"""Shared test helpers: where ../shared is, and seeded RNG."""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The reference material beside the repo (A2S_SHARED overrides)."""
    return Path(os.environ.get("A2S_SHARED", REPO.parent / "shared"))


def require_shared(*parts: str) -> Path:
    """Path under ../shared, or skip the test with the reason when it is absent."""
    p = shared_dir().joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference material not found: {p} (it lives in ../shared beside the repo; set A2S_SHARED)")
    return p


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)
