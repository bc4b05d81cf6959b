"""Shared test setup: one torch thread (small kernels run faster on 2-core CI), quiet bars."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WORKBENCH_PROGRESS", "0")
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items) -> None:
    """``gpu`` tests run only where torch sees a CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        # the marker, not item.keywords: keywords also hold folder names (tests/gpu/)
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
