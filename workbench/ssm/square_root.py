r"""Square-root Kalman filter and RTS smoother: covariances carried as triangular factors.

Every covariance is held as a factor :math:`P = L L^\top` and every update is an orthogonal
(QR) triangularisation of a stacked array of factors, so covariances stay symmetric positive
semi-definite by construction and the recursions lose half as many digits as the covariance
forms (the condition number enters through :math:`\kappa(L) = \sqrt{\kappa(P)}`). This is the
robust choice for float32, very short steps relative to the lengthscale and noise-free data.

The recursions, for scalar observations :math:`y_k = h^\top x_k + e_k`, :math:`e_k \sim N(0,
R_k)`:

.. math::
    L^-_{k+1} = \operatorname{tria}\,[A_k L_k,\; L_{Q_k}], \qquad
    \operatorname{tria}\begin{bmatrix} \sqrt{R_k} & h^\top L^-_k \\ 0 & L^-_k \end{bmatrix}
    = \begin{bmatrix} \sqrt{s_k} & 0 \\ \bar K_k & L_k \end{bmatrix},

with innovation variance :math:`s_k`, gain :math:`K_k = \bar K_k / \sqrt{s_k}`, and the RTS
smoother in the Joseph-like form that is a sum of PSD terms,

.. math::
    L^s_k = \operatorname{tria}\,[(I - E_k A_k) L_k,\; E_k L_{Q_k},\; E_k L^s_{k+1}], \qquad
    E_k = P_k A_k^\top (P^-_{k+1})^{-1},

where :math:`\operatorname{tria}(M)` is a lower-triangular :math:`L` with
:math:`L L^\top = M M^\top` (from the QR factorisation of :math:`M^\top`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from workbench.ssm.kalman import SmootherResult

__all__ = ["SqrtFilterResult", "psd_factor", "sqrt_kalman_filter", "sqrt_rts_smoother", "tria"]


class SqrtFilterResult(NamedTuple):
    """A :class:`~workbench.ssm.FilterResult` plus the covariance factors it came from."""

    mean: torch.Tensor  # shape: (*batch, T, S)
    cov: torch.Tensor  # shape: (*batch, T, S, S), chol @ chol.mT
    pred_mean: torch.Tensor  # shape: (*batch, T, S)
    pred_cov: torch.Tensor  # shape: (*batch, T, S, S)
    log_marginal: torch.Tensor  # shape: (*batch,)
    chol: torch.Tensor  # shape: (*batch, T, S, S) lower-triangular factors of cov
    pred_chol: torch.Tensor  # shape: (*batch, T, S, S)
    noise_chol: torch.Tensor  # shape: (T-1, S, S) factors of Q (reused by the smoother)


def tria(M: torch.Tensor) -> torch.Tensor:
    """Lower-triangular ``L`` (shape (..., S, S)) with ``L @ L.mT == M @ M.mT`` for ``M`` of
    shape (..., S, K), K >= S; differentiable (reduced QR of ``M.mT``)."""
    return torch.linalg.qr(M.mT, mode="reduced").R.mT


def psd_factor(M: torch.Tensor, max_tries: int = 8) -> torch.Tensor:
    """A lower-triangular factor of the symmetric PSD matrices ``M`` (shape (..., S, S)).

    Process-noise matrices of short steps are PSD but numerically singular (eigenvalues down
    to :math:`(\\Delta/\\rho)^{2p+1}` of the largest); a matrix whose Cholesky factorisation
    fails gets a diagonal jitter starting at ``10 * eps * max(diag)`` and growing tenfold, the
    smallest perturbation the dtype can resolve anyway.

    Raises
    ------
    torch.linalg.LinAlgError
        ``M`` is not PSD even with a jitter of ``10**max_tries * eps`` times its scale.
    """
    L, info = torch.linalg.cholesky_ex(M)
    if not bool((info > 0).any()):
        return L
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    scale = M.diagonal(dim1=-2, dim2=-1).amax(-1).clamp_min(torch.finfo(M.dtype).tiny)
    jitter = 10 * torch.finfo(M.dtype).eps * scale
    for _ in range(max_tries):
        L_try, info_try = torch.linalg.cholesky_ex(M + jitter[..., None, None] * eye)
        failed = info > 0
        L = torch.where(failed[..., None, None], L_try, L)
        info = torch.where(failed, info_try, info)
        if not bool((info > 0).any()):
            return L
        jitter = 10 * jitter
    raise torch.linalg.LinAlgError(
        f"expected positive semi-definite process noise, got a matrix whose factorisation "
        f"failed even with a jitter of {float(jitter.max()):.3g}"
    )


def sqrt_kalman_filter(
    A: torch.Tensor,  # shape: (T-1, S, S) transition from step k to k+1
    Q: torch.Tensor,  # shape: (T-1, S, S) process noise from step k to k+1
    H: torch.Tensor,  # shape: (1, S)
    y: torch.Tensor,  # shape: (*batch, T) observations (any value where unobserved)
    R: torch.Tensor,  # shape: () or (*batch, T) noise variance (>= 0)
    mask: torch.Tensor,  # shape: (*batch, T) True where observed
    Pinf: torch.Tensor,  # shape: (S, S) prior covariance of x_1
) -> SqrtFilterResult:
    r"""Square-root form of :func:`~workbench.ssm.kalman_filter` (same arguments and outputs,
    plus the factors). O(T S³); the loop runs over time and vectorises over the batch dims.

    .. math::
        \log p(y) = \sum_{k\,\text{observed}} \log N(y_k;\, h^\top m^-_k,\, s_k)
    """
    T, S = y.shape[-1], A.shape[-1]
    batch = y.shape[:-1]
    R = torch.as_tensor(R, dtype=y.dtype, device=y.device).expand(*batch, T)
    root_R = R.clamp_min(0.0).sqrt()
    h = H[0]
    LQ = psd_factor(Q) if T > 1 else Q
    m = y.new_zeros(*batch, S)
    L = psd_factor(Pinf).expand(*batch, S, S)
    log_marginal = y.new_zeros(batch)
    zeros = y.new_zeros(*batch, S, 1)
    out: dict[str, list[torch.Tensor]] = {"m": [], "L": [], "mp": [], "Lp": []}
    for k in range(T):
        if k > 0:
            m = m @ A[k - 1].mT
            L = tria(torch.cat([A[k - 1] @ L, LQ[k - 1].expand(*batch, S, S)], -1))
        out["mp"].append(m)
        out["Lp"].append(L)
        top = torch.cat([root_R[..., k, None, None], (h @ L)[..., None, :]], -1)
        post = tria(torch.cat([top, torch.cat([zeros, L], -1)], -2))  # (*batch, S+1, S+1)
        root_s, gain_bar = post[..., 0, 0], post[..., 1:, 0]
        v = y[..., k] - m @ h
        seen = mask[..., k]
        m = torch.where(seen[..., None], m + gain_bar * (v / root_s)[..., None], m)
        L = torch.where(seen[..., None, None], post[..., 1:, 1:], L)
        s = root_s.square()
        term = -0.5 * (math.log(2 * math.pi) + torch.log(s) + v.square() / s)
        log_marginal = log_marginal + torch.where(seen, term, torch.zeros_like(term))
        out["m"].append(m)
        out["L"].append(L)
    chol, pred_chol = torch.stack(out["L"], -3), torch.stack(out["Lp"], -3)
    return SqrtFilterResult(
        torch.stack(out["m"], -2),
        chol @ chol.mT,
        torch.stack(out["mp"], -2),
        pred_chol @ pred_chol.mT,
        log_marginal,
        chol,
        pred_chol,
        LQ,
    )


def sqrt_rts_smoother(
    A: torch.Tensor,  # shape: (T-1, S, S), as given to the filter
    filtered: SqrtFilterResult,
) -> SmootherResult:
    r"""Square-root Rauch-Tung-Striebel smoother from a :func:`sqrt_kalman_filter` result.

    The smoothed factor is a triangularisation of PSD terms (module docstring), so smoothed
    covariances are PSD by construction; the gain comes from two triangular solves with the
    predicted factor, never an explicit inverse.
    """
    S, LQ = filtered.mean.shape[-1], filtered.noise_chol
    T = filtered.mean.shape[-2]
    eye = torch.eye(S, dtype=A.dtype, device=A.device)
    m_s, L_s = filtered.mean[..., -1, :], filtered.chol[..., -1, :, :]
    means, chols = [m_s], [L_s]
    for k in range(T - 2, -1, -1):
        L_k = filtered.chol[..., k, :, :]
        L_pred = filtered.pred_chol[..., k + 1, :, :]
        # E^T = (P^-)^{-1} A P_k by two triangular solves with the predicted factor
        gain = torch.cholesky_solve(A[k] @ L_k @ L_k.mT, L_pred).mT
        m_s = filtered.mean[..., k, :] + (
            gain @ (m_s - filtered.pred_mean[..., k + 1, :])[..., None]
        ).squeeze(-1)
        stacked = [(eye - gain @ A[k]) @ L_k, gain @ LQ[k], gain @ L_s]
        L_s = tria(torch.cat(torch.broadcast_tensors(*stacked), -1))
        means.append(m_s)
        chols.append(L_s)
    chol = torch.stack(chols[::-1], -3)
    return SmootherResult(torch.stack(means[::-1], -2), chol @ chol.mT)
