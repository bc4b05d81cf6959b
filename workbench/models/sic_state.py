"""The ordered training set of a sparse inverse Cholesky GP and its sparse-factor helpers."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from workbench.linalg import maximin_pattern, reduced_ancestors
from workbench.linalg.factor import padded_pattern

__all__ = ["OrderedData", "order_data", "prior_apply", "prior_apply_transposed", "union_rows"]


class OrderedData(NamedTuple):
    X: torch.Tensor  # shape: (n, d) inputs in maximin order
    y: torch.Tensor  # shape: (n,) values in maximin order
    order: np.ndarray  # shape: (n,) data index of each position
    index: torch.Tensor  # shape: (n, m) padded pattern (self last)
    ancestors: torch.Tensor  # shape: (n, A) padded reduced ancestor sets (self last)
    scaled: np.ndarray  # shape: (n, d) inputs divided by the lengthscales, in order


def order_data(X: np.ndarray, y: np.ndarray, lengthscale: np.ndarray, rho: float) -> OrderedData:
    """Maximin order of the inputs scaled by the kernel's lengthscales, pattern and ancestors."""
    scaled = X / lengthscale
    pattern = maximin_pattern(scaled, rho)
    index = padded_pattern(pattern.indptr, pattern.indices)
    aptr, aidx = reduced_ancestors(scaled[pattern.order], pattern.lengths, rho)
    return OrderedData(
        torch.as_tensor(X[pattern.order]),
        torch.as_tensor(y[pattern.order]),
        pattern.order,
        torch.as_tensor(index),
        torch.as_tensor(padded_pattern(aptr, aidx)),
        scaled[pattern.order],
    )


def prior_apply_transposed(index: torch.Tensor, values: torch.Tensor, v: torch.Tensor):
    """:math:`U^\\top v` for a padded factor: entry j is :math:`\\sum_{i \\in s_j} U_{ij} v_i`."""
    return (values * torch.where(index >= 0, v[index.clamp_min(0)], 0.0)).sum(-1)


def prior_apply(index: torch.Tensor, values: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """:math:`U w` for a padded factor (scatter of each column times :math:`w_j`)."""
    contrib = torch.where(index >= 0, values * w[:, None], 0.0)
    out = torch.zeros_like(w)
    return out.index_add(0, index.clamp_min(0).reshape(-1), contrib.reshape(-1))


def union_rows(sets: torch.Tensor) -> torch.Tensor:
    """Row-wise sorted unions of index sets (b, k) with -1 padding -> (b, width), -1 first."""
    s, _ = torch.sort(sets, dim=1)
    dup = torch.zeros_like(s, dtype=torch.bool)
    dup[:, 1:] = s[:, 1:] == s[:, :-1]
    s = torch.where(dup, -1, s)
    s, _ = torch.sort(s, dim=1)
    width = int((s >= 0).sum(1).max())
    return s[:, s.shape[1] - width :]
