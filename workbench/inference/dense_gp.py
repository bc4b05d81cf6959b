"""Exact GP regression by Cholesky factorisation: the O(N³) reference for every fast path."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["DenseGPPrediction", "dense_gp_log_marginal", "dense_gp_predict", "robust_cholesky"]

_JITTERS = (0.0, 1e-10, 1e-8, 1e-6)


class DenseGPPrediction(NamedTuple):
    mean: torch.Tensor  # shape: (T_new,)
    variance: torch.Tensor  # shape: (T_new,)


def robust_cholesky(K: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factor of ``K`` (shape (N, N)), adding relative jitter only if needed."""
    scale = K.diagonal().abs().mean().clamp_min(torch.finfo(K.dtype).tiny)
    eye = torch.eye(K.shape[-1], dtype=K.dtype, device=K.device)
    for jitter in _JITTERS:
        L, info = torch.linalg.cholesky_ex(K + (jitter * scale) * eye)
        if int(info) == 0:
            return L
    raise torch.linalg.LinAlgError(
        "kernel matrix is not positive definite even with 1e-6 relative jitter; "
        "check for a zero noise variance and duplicated inputs"
    )


def dense_gp_log_marginal(
    K: torch.Tensor,  # shape: (N, N) prior covariance at the observed inputs
    residual: torch.Tensor,  # shape: (N,) y - prior mean
    noise: torch.Tensor,  # shape: () Gaussian noise variance
) -> torch.Tensor:
    r"""Log marginal likelihood :math:`\log \mathcal N(r \mid 0, K + \sigma^2 I)`.

    Examples
    --------
    >>> K = torch.eye(2, dtype=torch.float64)
    >>> r = torch.zeros(2, dtype=torch.float64)
    >>> round(float(dense_gp_log_marginal(K, r, torch.tensor(1.0))), 6)  # -log(2π·2)
    -2.531024
    """
    n = residual.shape[-1]
    L = robust_cholesky(K + noise * torch.eye(n, dtype=K.dtype, device=K.device))
    alpha = torch.linalg.solve_triangular(L, residual.unsqueeze(-1), upper=False).squeeze(-1)
    return -0.5 * alpha.square().sum() - L.diagonal().log().sum() - 0.5 * n * math.log(2 * math.pi)


def dense_gp_predict(
    K: torch.Tensor,  # shape: (N, N)
    K_new: torch.Tensor,  # shape: (T_new, N) cross-covariance
    k_new_diag: torch.Tensor,  # shape: (T_new,) prior variance at new inputs
    residual: torch.Tensor,  # shape: (N,)
    noise: torch.Tensor,  # shape: ()
) -> DenseGPPrediction:
    r"""Posterior marginals of the latent function at new inputs.

    .. math::
        \mu_* = K_{*x}(K + \sigma^2 I)^{-1} r, \qquad
        v_* = k_{**} - \operatorname{diag} K_{*x}(K + \sigma^2 I)^{-1} K_{x*}
    """
    n = residual.shape[-1]
    L = robust_cholesky(K + noise * torch.eye(n, dtype=K.dtype, device=K.device))
    alpha = torch.cholesky_solve(residual.unsqueeze(-1), L).squeeze(-1)
    V = torch.linalg.solve_triangular(L, K_new.mT, upper=False)
    variance = (k_new_diag - V.square().sum(-2)).clamp_min(0.0)
    return DenseGPPrediction(K_new @ alpha, variance)
