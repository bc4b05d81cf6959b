"""Forking torch's global random streams around code that reseeds them."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

__all__ = ["forked_rng"]


def forked_rng() -> AbstractContextManager[None]:
    """``torch.random.fork_rng`` over the CPU and every CUDA device in use.

    ``torch.manual_seed`` inside seeds the CUDA generators too; forking only the CPU stream
    (``devices=[]``) would leave a GPU user's CUDA stream reseeded after the call.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    return torch.random.fork_rng(devices=devices)
