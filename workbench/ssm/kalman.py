"""Sequential Kalman filter and RTS smoother for scalar observations, batched and masked."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["FilterResult", "SmootherResult", "kalman_filter", "rts_smoother"]


class FilterResult(NamedTuple):
    mean: torch.Tensor  # shape: (*batch, T, S) filtered means
    cov: torch.Tensor  # shape: (*batch, T, S, S) filtered covariances
    pred_mean: torch.Tensor  # shape: (*batch, T, S) one-step predictions
    pred_cov: torch.Tensor  # shape: (*batch, T, S, S)
    log_marginal: torch.Tensor  # shape: (*batch,) log p(y_1:T)


class SmootherResult(NamedTuple):
    mean: torch.Tensor  # shape: (*batch, T, S)
    cov: torch.Tensor  # shape: (*batch, T, S, S)


def kalman_filter(
    A: torch.Tensor,  # shape: (T-1, S, S) transition from step k to k+1
    Q: torch.Tensor,  # shape: (T-1, S, S) process noise from step k to k+1
    H: torch.Tensor,  # shape: (1, S)
    y: torch.Tensor,  # shape: (*batch, T) observations (any value where unobserved)
    R: torch.Tensor,  # shape: () or (*batch, T) noise variance
    mask: torch.Tensor,  # shape: (*batch, T) True where observed
    Pinf: torch.Tensor,  # shape: (S, S) prior covariance of x_1
) -> FilterResult:
    r"""Kalman filter for :math:`x_{k+1} = A_k x_k + q_k`, :math:`y_k = Hx_k + e_k`.

    The first state is stationary, :math:`x_1 \sim N(0, P_\infty)`.

    Unobserved steps (``mask`` False) carry zero information: the update and the likelihood term
    are skipped, never fed NaN. Costs O(T S³); the loop runs over time and vectorises over the
    batch dims.

    .. math::
        \log p(y) = \sum_{k\,\text{observed}} \log N(y_k;\, H m^-_k,\, H P^-_k H^\top + R_k)
    """
    T, S = y.shape[-1], A.shape[-1]
    batch = y.shape[:-1]
    R = torch.as_tensor(R, dtype=y.dtype, device=y.device).expand(*batch, T)
    h = H[0]
    m = y.new_zeros(*batch, S)
    P = Pinf.expand(*batch, S, S)
    log_marginal = y.new_zeros(batch)
    means, covs, pred_means, pred_covs = [], [], [], []
    for k in range(T):
        if k > 0:
            m = m @ A[k - 1].mT
            P = A[k - 1] @ P @ A[k - 1].mT + Q[k - 1]
        pred_means.append(m)
        pred_covs.append(P)
        Ph = P @ h  # (*batch, S)
        s = Ph @ h + R[..., k]
        v = y[..., k] - m @ h
        gain = Ph / s[..., None]
        seen = mask[..., k]
        m = torch.where(seen[..., None], m + gain * v[..., None], m)
        P_upd = P - gain[..., :, None] * Ph[..., None, :]
        P = torch.where(seen[..., None, None], 0.5 * (P_upd + P_upd.mT), P)
        term = -0.5 * (torch.log(2 * math.pi * s) + v.square() / s)
        log_marginal = log_marginal + torch.where(seen, term, torch.zeros_like(term))
        means.append(m)
        covs.append(P)
    return FilterResult(
        torch.stack(means, -2),
        torch.stack(covs, -3),
        torch.stack(pred_means, -2),
        torch.stack(pred_covs, -3),
        log_marginal,
    )


def rts_smoother(A: torch.Tensor, filtered: FilterResult) -> SmootherResult:
    r"""Rauch-Tung-Striebel smoother from a :func:`kalman_filter` result (same ``A``).

    .. math::
        E_k = P_k A_k^\top (P^-_{k+1})^{-1}, \quad
        m^s_k = m_k + E_k (m^s_{k+1} - m^-_{k+1}), \quad
        P^s_k = P_k + E_k (P^s_{k+1} - P^-_{k+1}) E_k^\top
    """
    T = filtered.mean.shape[-2]
    m_s, P_s = filtered.mean[..., -1, :], filtered.cov[..., -1, :, :]
    means, covs = [m_s], [P_s]
    for k in range(T - 2, -1, -1):
        P_k = filtered.cov[..., k, :, :]
        P_pred = filtered.pred_cov[..., k + 1, :, :]
        # E^T = (P^-)^{-1} A P_k, a solve with the symmetric predicted covariance
        gain = torch.linalg.solve(P_pred, A[k] @ P_k).mT
        m_s = (
            filtered.mean[..., k, :]
            + (gain @ (m_s - filtered.pred_mean[..., k + 1, :])[..., None])[..., 0]
        )
        P_s = P_k + gain @ (P_s - P_pred) @ gain.mT
        P_s = 0.5 * (P_s + P_s.mT)
        means.append(m_s)
        covs.append(P_s)
    return SmootherResult(torch.stack(means[::-1], -2), torch.stack(covs[::-1], -3))
