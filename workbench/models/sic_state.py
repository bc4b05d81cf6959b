"""The ordered training set of a sparse inverse Cholesky GP and its sparse-factor helpers."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from workbench.inference.dkl import ancestor_solve
from workbench.linalg import maximin_pattern, reduced_ancestors
from workbench.linalg.factor import padded_pattern

__all__ = [
    "OrderedData",
    "order_data",
    "predictive_variance",
    "prior_apply",
    "prior_apply_transposed",
    "union_rows",
]


class OrderedData(NamedTuple):
    X: torch.Tensor  # shape: (n, d) inputs in maximin order
    y: torch.Tensor  # shape: (n,) values in maximin order
    order: np.ndarray  # shape: (n,) data index of each position
    index: torch.Tensor  # shape: (n, m) padded pattern (self last)
    ancestors: torch.Tensor  # shape: (n, A) padded reduced ancestor sets (self last)
    scaled: np.ndarray  # shape: (n, d) inputs divided by the lengthscales, in order


def order_data(
    X: np.ndarray, y: np.ndarray, lengthscale: np.ndarray, rho: float, device=None
) -> OrderedData:
    """Maximin order of the inputs scaled by the kernel's lengthscales, pattern and ancestors
    (built on the CPU; the tensors are put on ``device``)."""
    scaled = X / lengthscale
    pattern = maximin_pattern(scaled, rho)
    index = padded_pattern(pattern.indptr, pattern.indices)
    aptr, aidx = reduced_ancestors(scaled[pattern.order], pattern.lengths, rho)
    return OrderedData(
        torch.as_tensor(X[pattern.order], device=device),
        torch.as_tensor(y[pattern.order], device=device),
        pattern.order,
        torch.as_tensor(index, device=device),
        torch.as_tensor(padded_pattern(aptr, aidx), device=device),
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


def predictive_variance(
    data: OrderedData,
    near: torch.Tensor,  # shape: (b, k) positions each new point conditions on
    u_c: torch.Tensor,  # shape: (b, k) the new columns' prior-factor entries on them
    V: torch.Tensor,  # shape: (n, m) values of q's factor
    budget: int = 2**23,
) -> torch.Tensor:
    """:math:`1 + \\|V^{-1}u_c\\|^2` per row (b,), the solve restricted to the union of the
    neighbours' reduced ancestor sets. Rows go in pieces whose dense blocks hold about
    ``budget`` entries (64 MB by default): the unions hold hundreds of positions."""
    ancestors = data.ancestors[near].reshape(near.shape[0], -1)
    width = union_rows(ancestors[:64]).shape[1]
    out = []
    for rows in torch.arange(near.shape[0], device=near.device).split(max(1, budget // width**2)):
        anc = union_rows(ancestors[rows])
        slot = torch.searchsorted(anc.contiguous(), near[rows].contiguous())
        rhs = V.new_zeros(anc.shape).scatter_(1, slot, u_c[rows])
        z = ancestor_solve(anc, data.index, V, rhs[..., None])[..., 0]
        out.append(1 + z.square().sum(1))
    return torch.cat(out)
