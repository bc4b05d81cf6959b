r"""The double-KL ELBO of a sparse inverse Cholesky GP, column by column (Cao et al., ICML 2023).

Prior :math:`\hat p = N(\mu, (\hat U\hat U^\top)^{-1})` (KL-optimal factor) and variational
:math:`q = N(\nu, (VV^\top)^{-1})`, both upper triangular in maximin order with the same pattern.
With :math:`\tilde\sigma_j^2 = \|V^{-1}e_j\|^2`,

.. math::
    \mathrm{ELBO} = \tfrac n2 + \sum_j \Big(E_{N(\nu_j, \tilde\sigma_j^2)}\log p(y_j \mid f_j)
        + \log\hat U_{jj} - \log V_{jj} - \tfrac12(\hat U_{:,j}^\top(\nu - \mu))^2
        - \tfrac12\|V^{-1}\hat U_{:,j}\|^2\Big).

The solves with V are restricted to the reduced ancestor set :math:`a_j` of column j: the block
:math:`V_{a_j a_j}` is gathered densely and solved against :math:`[e_j, \hat U_{a_j, j}]`.
This is exact when :math:`a_j` holds every ancestor of j in V's graph (e.g. the full pattern),
an approximation controlled by :math:`\rho` otherwise. The sum over a minibatch B, scaled by
:math:`n/|B|`, is an unbiased estimate of the sum over all columns.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["ColumnTerms", "ancestor_solve", "column_terms", "elbo_from_terms", "scatter_columns"]


class ColumnTerms(NamedTuple):
    variance: torch.Tensor  # shape: (b,) q-marginal variances of the batch's f_j
    logdet: torch.Tensor  # shape: (b,) log U_jj - log V_jj
    mean: torch.Tensor  # shape: (b,) -1/2 (U_{:,j}^T (nu - mu))^2
    trace: torch.Tensor  # shape: (b,) -1/2 ||V^{-1} U_{:,j}||^2


def scatter_columns(
    rows: torch.Tensor,  # shape: (b, A) positions of a_j, ascending, -1 padding first
    index: torch.Tensor,  # shape: (n, m) padded factor pattern
    values: torch.Tensor,  # shape: (n, m) factor values
    columns: torch.Tensor,  # shape: (b, C) which columns to gather (-1: none)
) -> torch.Tensor:
    """Dense blocks (b, A, C): entry [r, c] is the factor's value at (rows[r], columns[c])."""
    b, A = rows.shape
    valid = columns >= 0
    col_rows = index[columns.clamp_min(0)]  # (b, C, m) row positions of each gathered column
    col_vals = torch.where(valid[..., None], values[columns.clamp_min(0)], 0.0)
    key = torch.where(rows >= 0, rows, -1)
    slot = torch.searchsorted(key, col_rows.reshape(b, -1)).clamp_max(A - 1)  # (b, C m)
    wanted = col_rows.reshape(b, -1)
    hit = (torch.gather(key, 1, slot) == wanted) & (wanted >= 0)
    C, m = col_rows.shape[1], col_rows.shape[2]
    which = torch.arange(C, device=rows.device).repeat_interleave(m).expand(b, -1)
    flat = torch.zeros(b, A * C, dtype=values.dtype, device=values.device)
    target = slot * C + which
    source = torch.where(hit, col_vals.reshape(b, -1), 0.0)
    flat = flat.scatter_add(1, torch.where(hit, target, 0), source)
    return flat.reshape(b, A, C)


def ancestor_solve(
    rows: torch.Tensor,  # shape: (b, A) positions of each set, ascending, -1 padding first
    index: torch.Tensor,  # shape: (n, m) padded pattern of V
    variational: torch.Tensor,  # shape: (n, m) values of V
    rhs: torch.Tensor,  # shape: (b, A, r) right-hand sides on those positions
) -> torch.Tensor:
    """:math:`V_{aa}^{-1}` rhs for each set a: the dense block of V gathered over the set
    (identity on padding), one batched triangular solve."""
    V = scatter_columns(rows, index, variational, rows)  # (b, A, A) upper triangular
    pad = rows < 0
    eye = torch.eye(rows.shape[1], dtype=V.dtype, device=V.device)
    V = torch.where(pad[:, :, None] | pad[:, None, :], eye.expand_as(V), V)
    return torch.linalg.solve_triangular(V, rhs, upper=True)


def column_terms(
    batch: torch.Tensor,  # shape: (b,) column positions
    ancestors: torch.Tensor,  # shape: (n, A) padded reduced ancestor sets (self last)
    index: torch.Tensor,  # shape: (n, m) padded pattern of U and V
    prior: torch.Tensor,  # shape: (n, m) values of U (KL-optimal)
    variational: torch.Tensor,  # shape: (n, m) values of V
    nu: torch.Tensor,  # shape: (n,)
    mu: torch.Tensor,  # shape: (n,) prior mean
) -> ColumnTerms:
    """The ELBO's per-column terms for ``batch`` (everything but the expected log-likelihood)."""
    rows = ancestors[batch]  # (b, A)
    u = scatter_columns(rows, index, prior, batch[:, None])  # (b, A, 1) U_{a_j, j}
    e = torch.zeros_like(u)
    e[:, -1] = 1.0
    solved = ancestor_solve(rows, index, variational, torch.cat([e, u], -1))
    variance = solved[..., 0].square().sum(-1)
    trace = -0.5 * solved[..., 1].square().sum(-1)
    cols = index[batch]
    resid = torch.where(cols >= 0, (nu - mu)[cols.clamp_min(0)], 0.0)
    mean = -0.5 * (prior[batch] * resid).sum(-1).square()
    logdet = prior[batch, -1].log() - variational[batch, -1].log()
    return ColumnTerms(variance, logdet, mean, trace)


def elbo_from_terms(terms: ColumnTerms, expected_loglik: torch.Tensor, n: int) -> torch.Tensor:
    """:math:`n/2 + (n/|B|)\\sum_{j \\in B}` of the column terms plus the expected
    log-likelihoods (b,)."""
    total = expected_loglik + terms.logdet + terms.mean + terms.trace
    return 0.5 * n + n / total.shape[0] * total.sum()
