r"""Two-filter (forward-backward information) smoother for stationary state-space priors.

The posterior at step t combines the forward filter :math:`p(x_t \mid y_{1:t})` with the
backward prediction :math:`p(x_t \mid y_{t+1:T})` and divides out the prior once:

.. math::
    P_s^{-1} = P_f^{-1} + (P_b^-)^{-1} - P_\infty^{-1}, \qquad
    m_s = P_s\,\bigl(P_f^{-1} m_f + (P_b^-)^{-1} m_b^-\bigr).

The backward pass is an ordinary Kalman filter run on the time-reversed process, which for a
stationary prior started in stationarity is again Gauss-Markov with
:math:`A_b = P_\infty A^\top P_\infty^{-1}` and :math:`Q_b = P_\infty - A_b P_\infty A_b^\top`.
The two passes are independent (they parallelise), and sites in information form enter both
by addition, which is why CVI uses this smoother.

References
----------
1. D. Q. Mayne, "A solution of the smoothing problem for linear dynamic systems",
   Automatica 4, 1966; D. C. Fraser and J. E. Potter, IEEE TAC 14(4), 1969.
"""

from __future__ import annotations

import torch

from workbench.ssm.kalman import FilterResult, SmootherResult, kalman_filter
from workbench.ssm.parallel import parallel_kalman_filter

__all__ = ["reverse_transitions", "two_filter_smoother"]


def reverse_transitions(
    A: torch.Tensor,  # shape: (T-1, S, S)
    Pinf: torch.Tensor,  # shape: (S, S)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Transitions of the time-reversed stationary process, step k+1 -> k; each (T-1, S, S)."""
    A_b = torch.linalg.solve(Pinf, A @ Pinf).mT  # Pinf A^T Pinf^{-1}, Pinf symmetric
    Q_b = Pinf - A_b @ Pinf @ A_b.mT
    return A_b, 0.5 * (Q_b + Q_b.mT)


def two_filter_smoother(
    A: torch.Tensor,  # shape: (T-1, S, S)
    Q: torch.Tensor,  # shape: (T-1, S, S)
    H: torch.Tensor,  # shape: (1, S)
    y: torch.Tensor,  # shape: (*batch, T)
    R: torch.Tensor,  # shape: () or (*batch, T)
    mask: torch.Tensor,  # shape: (*batch, T)
    Pinf: torch.Tensor,  # shape: (S, S)
    *,
    parallel: bool = True,
) -> tuple[SmootherResult, FilterResult]:
    """Smoothed moments (and the forward filter, for its log marginal likelihood).

    Same model and arguments as :func:`workbench.ssm.kalman_filter`; ``parallel`` selects the
    associative-scan filters.
    """
    run = parallel_kalman_filter if parallel else kalman_filter
    forward = run(A, Q, H, y, R, mask, Pinf)
    A_b, Q_b = reverse_transitions(A, Pinf)
    R = torch.as_tensor(R, dtype=y.dtype, device=y.device).expand(y.shape)
    backward = run(A_b.flip(0), Q_b.flip(0), H, y.flip(-1), R.flip(-1), mask.flip(-1), Pinf)
    m_b = backward.pred_mean.flip(-2)  # p(x_t | y_{t+1:T}), time order restored
    P_b = backward.pred_cov.flip(-3)
    eye = torch.eye(Pinf.shape[-1], dtype=Pinf.dtype, device=Pinf.device)
    Z_f = torch.cholesky_inverse(torch.linalg.cholesky(forward.cov))
    Z_b = torch.cholesky_inverse(torch.linalg.cholesky(P_b))
    Z_0 = torch.cholesky_inverse(torch.linalg.cholesky(Pinf))
    Z_s = Z_f + Z_b - Z_0
    L_s = torch.linalg.cholesky(0.5 * (Z_s + Z_s.mT))
    P_s = torch.cholesky_solve(eye.expand_as(Z_s), L_s)
    z_s = Z_f @ forward.mean[..., None] + Z_b @ m_b[..., None]
    m_s = torch.cholesky_solve(z_s, L_s)[..., 0]
    return SmootherResult(m_s, 0.5 * (P_s + P_s.mT)), forward
