r"""Variational EM of Magma / MagmaClust: mean-process posteriors, memberships, ELBO, M-step.

Model (Leroy et al.): task i in cluster k (:math:`Z_{ik} = 1`, prior :math:`\pi_k`) is
:math:`y_i = \mu_k(t_i) + f_i(t_i) + \varepsilon_i`, with :math:`\mu_k \sim GP(m_k, C_{\gamma_k})`
and :math:`y_i \mid \mu_k \sim N(\mu_k(t_i), \Psi_i)`,
:math:`\Psi_i = \Sigma_{\theta_i}(t_i, t_i) + \sigma_i^2 I`. The variational family is
:math:`q(Z)\prod_k q(\mu_k)`; with :math:`\Lambda_k = \sum_i \tau_{ik}\tilde\Psi_i^{-1}`,
:math:`h_k = \sum_i \tau_{ik}\tilde\Psi_i^{-1}\tilde y_i` (task blocks scattered onto the union
grid) and :math:`C_k = LL^\top`,

.. math::
    B_k = I + L^\top\Lambda_k L,\quad \hat C_k = L B_k^{-1} L^\top,\quad
    \hat m_k = m_k + \hat C_k(h_k - \Lambda_k m_k),

    \log\tau_{ik} = \log\pi_k + \log N(y_i; \hat m_k(t_i), \Psi_i)
        - \tfrac12\mathrm{tr}(\Psi_i^{-1}\hat C_k(t_i, t_i)) + \text{const},

never inverting :math:`C_k` (eigenvalues of :math:`B_k` are at least 1).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from workbench.kernels.batched import dense_kernel
from workbench.models.task_grid import TaskGrid, scatter_blocks

__all__ = [
    "MeanPosterior",
    "TaskPrecision",
    "elbo",
    "mean_moments",
    "mean_posterior",
    "mean_process_objective",
    "memberships",
    "posterior_factor",
    "task_objective",
    "task_precision",
    "task_terms",
]

LOG_2PI = math.log(2 * math.pi)


class TaskPrecision(NamedTuple):
    chol: torch.Tensor  # shape: (M, N, N) Cholesky of Psi_i (identity on padded rows)
    inverse: torch.Tensor  # shape: (M, N, N) Psi_i^{-1}, zero on padded rows/cols
    inverse_y: torch.Tensor  # shape: (M, N) Psi_i^{-1} y_i, zero where padded


class MeanPosterior(NamedTuple):
    mean: torch.Tensor  # shape: (K, P) hat m_k
    cov: torch.Tensor  # shape: (K, P, P) hat C_k
    logdet: torch.Tensor  # shape: (K,) log |hat C_k|


def task_covariance(kernel, noise: torch.Tensor, grid: TaskGrid) -> torch.Tensor:
    """Psi_i on each task's points, (M, N, N), identity on padded rows and columns."""
    t = grid.t[..., None]
    cov = dense_kernel(kernel, t, t)
    N = t.shape[1]
    eye = torch.eye(N, dtype=cov.dtype, device=cov.device)
    cov = cov + noise.reshape(-1, 1, 1) * eye
    return torch.where(grid.pair_valid, cov, eye)


def task_precision(psi: torch.Tensor, grid: TaskGrid) -> TaskPrecision:
    chol = torch.linalg.cholesky(psi)
    inverse = torch.where(grid.pair_valid, torch.cholesky_inverse(chol), 0.0)
    return TaskPrecision(chol, inverse, (inverse @ grid.y[..., None])[..., 0])


def mean_posterior(
    prior_cov: torch.Tensor,  # shape: (K, P, P) C_k (jitter included)
    prior_mean: torch.Tensor,  # shape: (K, P) m_k on the grid
    precision: TaskPrecision,
    tau: torch.Tensor,  # shape: (M, K)
    grid: TaskGrid,
) -> MeanPosterior:
    weights = tau.T
    Lam, h = scatter_blocks(
        grid,
        weights[:, :, None, None] * precision.inverse,
        weights[:, :, None] * precision.inverse_y,
    )
    L = torch.linalg.cholesky(prior_cov)
    P = prior_cov.shape[-1]
    B = torch.eye(P, dtype=L.dtype, device=L.device) + L.mT @ Lam @ L
    LB = torch.linalg.cholesky(B)
    W = torch.linalg.solve_triangular(LB, L.mT, upper=False)  # hat C = W^T W
    cov = W.mT @ W
    mean = prior_mean + (cov @ (h - (Lam @ prior_mean[..., None])[..., 0])[..., None])[..., 0]
    logdet = 2 * (L.diagonal(0, -2, -1).log().sum(-1) - LB.diagonal(0, -2, -1).log().sum(-1))
    return MeanPosterior(mean, 0.5 * (cov + cov.mT), logdet)


def task_terms(precision: TaskPrecision, post: MeanPosterior, grid: TaskGrid) -> torch.Tensor:
    """(M, K): log N(y_i; hat m_k(t_i), Psi_i) - 1/2 tr(Psi_i^{-1} hat C_k(t_i, t_i))."""
    resid = torch.where(grid.valid, grid.y - grid.gather(post.mean), 0.0)  # (K, M, N)
    z = torch.linalg.solve_triangular(precision.chol, resid.unsqueeze(-1), upper=False)
    quad = z.square().sum((-2, -1))
    logdet = 2 * precision.chol.diagonal(0, -2, -1).log().sum(-1)  # padded diagonal: log 1
    n = grid.valid.sum(1).to(precision.chol.dtype)  # an int tensor times a float is float32
    blocks = torch.where(grid.pair_valid, grid.gather_blocks(post.cov), 0.0)  # (K, M, N, N)
    trace = (precision.inverse * blocks).sum((-2, -1))
    return (-0.5 * (quad + logdet + n * LOG_2PI) - 0.5 * trace).T


def memberships(log_pi: torch.Tensor, terms: torch.Tensor) -> torch.Tensor:
    """tau (M, K) from log pi (K,) and :func:`task_terms` (log-sum-exp normalised)."""
    return torch.softmax(log_pi + terms, dim=-1)


def posterior_factor(post: MeanPosterior) -> torch.Tensor:
    """A square root F of hat C (F F^T = hat C), for the trace term of :func:`_prior_fit`."""
    vals, vecs = torch.linalg.eigh(post.cov)
    return vecs * vals.clamp_min(0.0).sqrt()[..., None, :]


def _prior_fit(prior_cov, prior_mean, post: MeanPosterior, factor=None) -> torch.Tensor:
    """(K,): log N(hat m_k; m_k, C_k) - 1/2 tr(C_k^{-1} hat C_k)."""
    L = torch.linalg.cholesky(prior_cov)
    z = torch.linalg.solve_triangular(L, (post.mean - prior_mean)[..., None], upper=False)
    P = prior_cov.shape[-1]
    logdet = 2 * L.diagonal(0, -2, -1).log().sum(-1)
    factor = posterior_factor(post) if factor is None else factor
    trace = torch.linalg.solve_triangular(L, factor, upper=False).square().sum((-2, -1))
    return -0.5 * (z.square().sum((-2, -1)) + logdet + P * LOG_2PI) - 0.5 * trace


def elbo(
    prior_cov, prior_mean, post: MeanPosterior, terms: torch.Tensor, tau, log_pi
) -> torch.Tensor:
    """The exact ELBO, entropy constants included (they matter for VBIC)."""
    P = prior_cov.shape[-1]
    entropy_mu = 0.5 * post.logdet + 0.5 * P * (1 + LOG_2PI)
    safe = tau.clamp_min(torch.finfo(tau.dtype).tiny)
    entropy_z = (tau * (log_pi - safe.log())).sum()
    fit = (tau * terms).sum()
    return _prior_fit(prior_cov, prior_mean, post).sum() + fit + entropy_z + entropy_mu.sum()


def mean_moments(post: MeanPosterior, prior_mean: torch.Tensor, shared: bool) -> torch.Tensor:
    r"""A square root F of :math:`S_k = \hat C_k + r_k r_k^\top`, :math:`r_k = \hat m_k - m_k`,
    shape (K, P, P), or of :math:`\sum_k S_k` (P, P) when the clusters share one covariance C.

    Then :math:`\sum_k E_q\log N(\mu_k; m_k, C) = -\tfrac12\sum(\log|C| + \|L^{-1}F\|_F^2
    + P\log 2\pi)`: one triangular solve per M-step evaluation, whatever K.
    """
    resid = post.mean - prior_mean
    S = post.cov + resid[..., :, None] * resid[..., None, :]
    if shared:
        S = S.sum(0)
    vals, vecs = torch.linalg.eigh(S)
    return vecs * vals.clamp_min(0.0).sqrt()[..., None, :]


def mean_process_objective(prior_cov: torch.Tensor, factor: torch.Tensor, n_clusters: int):
    """Negative M-step objective of the mean-process hyper-parameters, summed over clusters;
    ``factor`` from :func:`mean_moments` (computed once per M-step)."""
    L = torch.linalg.cholesky(prior_cov)
    P = prior_cov.shape[-1]
    copies = n_clusters if prior_cov.dim() == 2 else 1  # a shared C counts once per cluster
    logdet = 2 * L.diagonal(0, -2, -1).log().sum(-1)
    quad = torch.linalg.solve_triangular(L, factor, upper=False).square().sum((-2, -1))
    return 0.5 * (copies * (logdet + P * LOG_2PI) + quad).sum()


def second_moments(post: MeanPosterior, tau: torch.Tensor, grid: TaskGrid) -> torch.Tensor:
    """S_i = sum_k tau_ik [(y_i - hat m_k)(y_i - hat m_k)^T + hat C_k] on each task's points."""
    resid = torch.where(grid.valid, grid.y - grid.gather(post.mean), 0.0)  # (K, M, N)
    blocks = grid.gather_blocks(post.cov)
    S = resid[..., :, None] * resid[..., None, :] + blocks
    S = (tau.T[:, :, None, None] * S).sum(0)
    return torch.where(grid.pair_valid, S, 0.0)


def task_objective(
    psi: torch.Tensor, moments: torch.Tensor, grid: TaskGrid, counts: torch.Tensor | None = None
) -> torch.Tensor:
    """Negative M-step objective of the task hyper-parameters (summed over tasks).

    With ``counts`` (G,), the rows are input patterns shared by that many tasks (see
    :func:`~workbench.models.task_grid.grid_patterns`) and ``moments`` their summed S_i.
    """
    chol = torch.linalg.cholesky(psi)
    logdet = 2 * chol.diagonal(0, -2, -1).log().sum(-1)
    trace = (torch.cholesky_inverse(chol) * moments).sum((-2, -1))
    size = grid.valid.sum(1).to(psi.dtype)
    copies = 1.0 if counts is None else counts.to(psi.dtype)
    return 0.5 * (copies * (logdet + size * LOG_2PI) + trace).sum()
