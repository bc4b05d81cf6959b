r"""Kalman filtering and smoothing with vector Gaussian sites on latent projections.

A site on the latent :math:`f_t = H s_t \in \mathbb R^K` is the unnormalised Gaussian factor
:math:`\tilde t_t(f) = \exp(j_t^\top f - \tfrac12 f^\top J_t f)` with :math:`J_t \succeq 0`
(possibly singular, zero for a bin without information). With :math:`B = H P^- H^\top`,
:math:`U = P^- H^\top` and :math:`N = I + J B`,

.. math::
    P = P^- - U N^{-1} J U^\top, \qquad m = m^- + U N^{-1}(j - J H m^-),

    \log c_t = -\tfrac12\log|N| + j^\top f^- - \tfrac12 f^{-\top} J f^-
        + \tfrac12 r^\top B N^{-1} r, \qquad f^- = H m^-,\ r = j - J f^-,

so neither :math:`J` nor a covariance is inverted, and
:math:`\sum_t \log c_t = \log\int p(s)\prod_t \tilde t_t(H s_t)\,ds`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from workbench.ssm.fast import compiled_available
from workbench.ssm.kalman import FilterResult, SmootherResult, rts_smoother

__all__ = ["LatentMoments", "site_filter", "site_smoother"]

try:
    from workbench.ssm import compiled as _compiled_small_rts
    from workbench.ssm import compiled_sites as _compiled
    from workbench.ssm import compiled_sites_small as _compiled_small
except ImportError:  # numba missing: the torch recursion is used
    _compiled = None

#: Stacked states up to this size use the allocation-free scalar loops, larger ones BLAS.
SMALL_STATE = 12


class LatentMoments(NamedTuple):
    mean: torch.Tensor  # shape: (*batch, T, K) smoothed E[f_t]
    cov: torch.Tensor  # shape: (*batch, T, K, K) smoothed Cov[f_t]
    log_z: torch.Tensor  # shape: (*batch,) sum_t log c_t


def _observed(info: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    return (info != 0).any(-1) | (precision != 0).flatten(-2).any(-1)


def site_filter(
    A: torch.Tensor,  # shape: (U, S, S) distinct transitions
    Q: torch.Tensor,  # shape: (U, S, S)
    H: torch.Tensor,  # shape: (K, S) latent projection
    info: torch.Tensor,  # shape: (*batch, T, K) site vectors j_t
    precision: torch.Tensor,  # shape: (*batch, T, K, K) site precisions J_t (PSD)
    Pinf: torch.Tensor,  # shape: (S, S) prior covariance of s_1
    index: torch.Tensor | None = None,  # shape: (T-1,) step k -> k+1 uses A[index[k]]
) -> FilterResult:
    """Sequential torch filter (differentiable by autograd); ``log_marginal`` is sum log c_t."""
    batch, T, S = info.shape[:-2], info.shape[-2], A.shape[-1]
    index = torch.arange(T - 1, device=info.device) if index is None else index
    seen = _observed(info, precision)
    m, P = info.new_zeros(*batch, S), Pinf.expand(*batch, S, S)
    eye = torch.eye(H.shape[0], dtype=info.dtype, device=info.device)
    log_z = info.new_zeros(batch)
    out: list[list[torch.Tensor]] = [[], [], [], []]
    for t in range(T):
        if t > 0:
            a = int(index[t - 1])
            m = m @ A[a].mT
            P = A[a] @ P @ A[a].mT + Q[a]
        out[2].append(m)
        out[3].append(P)
        j, J = info[..., t, :], precision[..., t, :, :]
        U = P @ H.mT
        f = m @ H.mT
        N = eye + J @ (H @ U)
        r = j - (J @ f[..., None])[..., 0]
        X = torch.linalg.solve(N, torch.cat([r[..., None], J], -1))
        m_new = m + (U @ X[..., :1])[..., 0]
        P_new = P - U @ X[..., 1:] @ U.mT
        term = (
            -0.5 * torch.linalg.slogdet(N)[1]
            + (j * f).sum(-1)
            - 0.5 * (f * (J @ f[..., None])[..., 0]).sum(-1)
            + 0.5 * (r * ((H @ U) @ X[..., :1])[..., 0]).sum(-1)
        )
        s = seen[..., t]
        m = torch.where(s[..., None], m_new, m)
        P = torch.where(s[..., None, None], 0.5 * (P_new + P_new.mT), P)
        log_z = log_z + torch.where(s, term, torch.zeros_like(term))
        out[0].append(m)
        out[1].append(P)
    mean, pred_mean = torch.stack(out[0], -2), torch.stack(out[2], -2)
    cov, pred_cov = torch.stack(out[1], -3), torch.stack(out[3], -3)
    return FilterResult(mean, cov, pred_mean, pred_cov, log_z)


def _compiled_filter(A, Q, H, info, precision, Pinf, index) -> FilterResult:
    batch, (T, K), S = info.shape[:-2], info.shape[-2:], A.shape[-1]
    j = info.reshape(-1, T, K).detach().cpu().numpy()
    J = precision.reshape(-1, T, K, K).detach().cpu().numpy()
    seen = _observed(info, precision).reshape(-1, T).cpu().numpy()
    B = j.shape[0]
    m, mp = np.empty((B, T, S)), np.empty((B, T, S))
    P, Pp = np.empty((B, T, S, S)), np.empty((B, T, S, S))
    log_z = np.empty(B)
    arrays = (t.detach().cpu().numpy() for t in (A, A.mT, Q, index, H, Pinf))
    A_, AT, Q_, idx, H_, Pinf_ = (np.ascontiguousarray(a) for a in arrays)
    sites = (np.ascontiguousarray(j), np.ascontiguousarray(J), seen, Pinf_, m, P, mp, Pp, log_z)
    if S <= SMALL_STATE:
        _compiled_small.site_filter_loops(A_, Q_, idx, H_, *sites)
    else:
        _compiled.site_filter_forward(A_, AT, Q_, idx, H_, *sites)
    shape = (*batch, T)
    return FilterResult(
        torch.from_numpy(m).reshape(*shape, S),
        torch.from_numpy(P).reshape(*shape, S, S),
        torch.from_numpy(mp).reshape(*shape, S),
        torch.from_numpy(Pp).reshape(*shape, S, S),
        torch.from_numpy(log_z).reshape(batch),
    )


def _compiled_smoother(A, filtered: FilterResult, index) -> SmootherResult:
    batch, (T, S) = filtered.mean.shape[:-2], filtered.mean.shape[-2:]
    flat = [t.reshape(-1, *t.shape[len(batch) :]).numpy() for t in filtered[:4]]
    ms, Ps = np.empty_like(flat[0]), np.empty_like(flat[1])
    idx = np.ascontiguousarray(index.numpy())
    run = _compiled_small_rts.rts_backward if S <= SMALL_STATE else _compiled.site_rts_backward
    run(np.ascontiguousarray(A.detach().numpy()), idx, *flat, ms, Ps)
    return SmootherResult(
        torch.from_numpy(ms).reshape(*batch, T, S), torch.from_numpy(Ps).reshape(*batch, T, S, S)
    )


def site_smoother(
    A: torch.Tensor,
    Q: torch.Tensor,
    H: torch.Tensor,
    info: torch.Tensor,
    precision: torch.Tensor,
    Pinf: torch.Tensor,
    index: torch.Tensor | None = None,
) -> LatentMoments:
    """Smoothed latent marginals and log Z (no gradients); compiled on CPU float64.

    Same arguments as :func:`site_filter`; O(T S³) work.
    """
    T = info.shape[-2]
    index = torch.arange(T - 1, device=info.device) if index is None else index
    with torch.no_grad():
        if _compiled is not None and compiled_available(A, Q, info, precision):
            filtered = _compiled_filter(A, Q, H, info, precision, Pinf, index)
            smoothed = _compiled_smoother(A, filtered, index)
        else:
            filtered = site_filter(A, Q, H, info, precision, Pinf, index)
            smoothed = rts_smoother(A[index], filtered)
        mean = smoothed.mean @ H.mT
        cov = H @ smoothed.cov @ H.mT
    return LatentMoments(mean, 0.5 * (cov + cov.mT), filtered.log_marginal)
