r"""Conjugate GP posteriors given Gaussian pseudo-observations, in O(T) by Kalman smoothing.

An amortised encoder reports, for each latent series z (T bins), pseudo-observations
:math:`\mu_t` with precisions :math:`\lambda_t \ge 0`. The approximate posterior is the exact
GP posterior they imply,

.. math::
    q(z) \propto p(z) \prod_t N(\mu_t \mid z_t, \lambda_t^{-1}), \qquad
    \mathrm{KL}(q \| p) = \sum_t E_q \log N(\mu_t \mid z_t, \lambda_t^{-1}) - \log Z,

where :math:`Z = \prod_t p(\mu_t \mid \mu_{<t})` is the Kalman filter's marginal likelihood and
:math:`E_q \log N = \tfrac12\log(\lambda_t/2\pi) - \tfrac12\lambda_t((\mu_t - m_t)^2 + v_t)`
needs only the smoothed marginals :math:`(m_t, v_t)`. A Matérn prior in state-space form makes
it linear in T (the MGPVAE construction); :func:`dense_pseudo_posterior` is the
:math:`O(T^3)` oracle for any kernel matrix.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from workbench.kernels.statespace import matern_sde as ms
from workbench.ssm import parallel_kalman_filter, parallel_rts_smoother

__all__ = ["PseudoPosterior", "dense_pseudo_posterior", "matern_pseudo_posterior"]


class PseudoPosterior(NamedTuple):
    mean: torch.Tensor  # shape: (*batch, T) smoothed means
    var: torch.Tensor  # shape: (*batch, T) smoothed variances
    kl: torch.Tensor  # shape: (*batch,) KL(q || p)


def _site_terms(mu, lam, mean, var) -> torch.Tensor:
    seen = lam > 0
    safe = torch.where(seen, lam, torch.ones_like(lam))
    value = 0.5 * torch.log(safe / (2 * math.pi)) - 0.5 * safe * ((mu - mean) ** 2 + var)
    return torch.where(seen, value, torch.zeros_like(value)).sum(-1)


def matern_pseudo_posterior(
    mu: torch.Tensor,  # shape: (*batch, T)
    lam: torch.Tensor,  # shape: (*batch, T) precisions, 0 = no information
    lengthscale: torch.Tensor,  # shape: () in bins
    nu: float = 2.5,
) -> PseudoPosterior:
    """Posterior of a unit-variance Matérn-ν GP on a unit grid by Kalman filtering and RTS
    smoothing, both as associative scans (fewer Python-level steps than the sequential loops)."""
    order = int(nu - 0.5)
    T = mu.shape[-1]
    lam_m = ms.matern_lambda(order, lengthscale)
    one = torch.ones((), dtype=mu.dtype, device=mu.device)
    dt = one.expand(max(T - 1, 1))
    A = ms.matern_transition(order, lam_m, dt)
    Q = ms.matern_process_noise(order, lam_m, one, dt)
    Pinf = ms.matern_stationary_covariance(order, lam_m, one)
    H = torch.zeros(1, order + 1, dtype=mu.dtype, device=mu.device)
    H[0, 0] = 1.0
    seen = lam > 0
    noise = torch.where(seen, 1.0 / lam.clamp_min(1e-30), torch.ones_like(lam))
    filtered = parallel_kalman_filter(A, Q, H, mu, noise, seen, Pinf)
    smoothed = parallel_rts_smoother(A, filtered)
    mean, var = smoothed.mean[..., 0], smoothed.cov[..., 0, 0]
    return PseudoPosterior(mean, var, _site_terms(mu, lam, mean, var) - filtered.log_marginal)


def dense_pseudo_posterior(
    mu: torch.Tensor,  # shape: (*batch, T)
    lam: torch.Tensor,  # shape: (*batch, T) precisions, 0 = no information
    K: torch.Tensor,  # shape: (T, T) prior covariance
) -> PseudoPosterior:
    """The same posterior by dense linear algebra in the well-conditioned form
    :math:`B = I + \\Lambda^{1/2} K \\Lambda^{1/2}`: :math:`m = K a`,
    :math:`a = \\Lambda^{1/2} B^{-1} \\Lambda^{1/2}\\mu`,
    :math:`S = K - K\\Lambda^{1/2} B^{-1}\\Lambda^{1/2} K` and
    :math:`\\mathrm{KL} = \\tfrac12(a^\\top K a - \\mathrm{tr}(B^{-1}W) + \\log|B|)`
    with :math:`W = \\Lambda^{1/2} K \\Lambda^{1/2}`."""
    root = lam.sqrt()
    W = root[..., :, None] * K * root[..., None, :]
    eye = torch.eye(mu.shape[-1], dtype=mu.dtype, device=mu.device)
    C = torch.linalg.cholesky(eye + W)
    a = root * torch.cholesky_solve((root * mu)[..., None], C)[..., 0]
    m = (K @ a[..., None])[..., 0]
    V = torch.linalg.solve_triangular(C, root[..., :, None] * K, upper=False)
    var = K.diagonal() - V.square().sum(-2)
    trace = torch.cholesky_solve(W, C).diagonal(dim1=-2, dim2=-1).sum(-1)
    quad = (a * m).sum(-1)
    kl = 0.5 * (quad - trace + 2 * C.diagonal(dim1=-2, dim2=-1).log().sum(-1))
    return PseudoPosterior(m, var, kl)
