r"""Sparse GP regression with inducing variables: Titsias' collapsed bound, per-point noise.

With inducing variables :math:`u = f(Z)` (M of them), :math:`K_{uu} = LL^\top`,
:math:`A = L^{-1}K_{uf}\Lambda^{-1/2}` and :math:`B = I + AA^\top = L_B L_B^\top`, where
:math:`\Lambda = \mathrm{diag}(\sigma^2_n)` holds each observation's noise variance,

.. math::
    \log p(y) \ge \log N(r; 0, Q_{ff} + \Lambda)
        - \tfrac12\,\mathrm{tr}\big(\Lambda^{-1}(K_{ff} - Q_{ff})\big),
    \qquad Q_{ff} = K_{fu}K_{uu}^{-1}K_{uf},

in O(N M²) (Titsias, AISTATS 2009). The bound is exact, and so is the predictive, when the
inducing inputs include every observed input.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from workbench.inference.dense_gp import robust_cholesky

__all__ = ["SparseFactors", "sgpr_bound", "sgpr_factors", "sgpr_predict"]


class SparseFactors(NamedTuple):
    L: torch.Tensor  # shape: (M, M) Cholesky of K_uu
    A: torch.Tensor  # shape: (M, N) L^{-1} K_uf Lambda^{-1/2}
    LB: torch.Tensor  # shape: (M, M) Cholesky of I + A A^T
    c: torch.Tensor  # shape: (M,) L_B^{-1} A Lambda^{-1/2} r


def sgpr_factors(
    Kuu: torch.Tensor,  # shape: (M, M)
    Kuf: torch.Tensor,  # shape: (M, N)
    residual: torch.Tensor,  # shape: (N,) y - prior mean
    noise: torch.Tensor,  # shape: (N,) noise variance of each observation
) -> SparseFactors:
    L = robust_cholesky(Kuu)
    root = noise.sqrt()
    A = torch.linalg.solve_triangular(L, Kuf, upper=False) / root
    B = torch.eye(A.shape[0], dtype=A.dtype, device=A.device) + A @ A.mT
    LB = torch.linalg.cholesky(B)
    c = torch.linalg.solve_triangular(LB, (A @ (residual / root))[:, None], upper=False)[:, 0]
    return SparseFactors(L, A, LB, c)


def sgpr_bound(
    factors: SparseFactors,
    kff_diag: torch.Tensor,  # shape: (N,) prior variances at the observed inputs
    residual: torch.Tensor,  # shape: (N,)
    noise: torch.Tensor,  # shape: (N,)
) -> torch.Tensor:
    """Titsias' collapsed lower bound on the log marginal likelihood."""
    A, LB, c = factors.A, factors.LB, factors.c
    n = residual.shape[0]
    quad = (residual.square() / noise).sum() - c.square().sum()
    logdet = 2 * LB.diagonal().log().sum() + noise.log().sum()
    trace = (kff_diag / noise).sum() - A.square().sum()
    return -0.5 * (quad + logdet + n * math.log(2 * math.pi) + trace)


def sgpr_predict(
    factors: SparseFactors,
    Kus: torch.Tensor,  # shape: (M, S) cross-covariance to the prediction inputs
    kss_diag: torch.Tensor,  # shape: (S,)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictive mean and variance of the latent function (the optimal q(u))."""
    V = torch.linalg.solve_triangular(factors.L, Kus, upper=False)
    W = torch.linalg.solve_triangular(factors.LB, V, upper=False)
    mean = W.mT @ factors.c
    variance = kss_diag - V.square().sum(0) + W.square().sum(0)
    return mean, variance.clamp_min(0.0)
