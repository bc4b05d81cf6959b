"""Shared test setup: one torch thread (small kernels run faster on 2-core CI), quiet bars."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WORKBENCH_PROGRESS", "0")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
