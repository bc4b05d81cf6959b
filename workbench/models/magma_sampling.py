r"""Draws from Magma / MagmaClust: mixture predictive of a new task, and the posterior
predictive of the training tasks under the fitted variational posterior.

For a training task i in cluster k, with :math:`q(\mu_k) = N(\hat m_k, \hat C_k)` and the task
deviation's exact conditional :math:`f_i \mid \mu_k, y_i` (:math:`\Psi_i = \Sigma_i +
\sigma_i^2 I`, :math:`A_i = \Sigma_i\Psi_i^{-1}`), the latent :math:`g_i = \mu_k(t_i) + f_i`
is Gaussian with

.. math::
    E g_i = \hat m_k + A_i(y_i - \hat m_k),\quad
    \mathrm{Cov}\, g_i = (I - A_i)\hat C_k(I - A_i)^\top + \Sigma_i - A_i\Sigma_i,

and a replicate is :math:`y_i^{rep} = g_i + \varepsilon_i` with :math:`k \sim \tau_i`. (The
new-task formula would condition :math:`\mu_k` on :math:`y_i` a second time.)
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from workbench.models.magma_vem import MeanPosterior
from workbench.models.task_grid import TaskGrid

__all__ = ["TaskPredictive", "draw_mixture", "gaussian_draws", "task_predictive"]


class TaskPredictive(NamedTuple):
    mean: torch.Tensor  # shape: (K, M, N) E g_i given cluster k
    cov: torch.Tensor  # shape: (K, M, N, N) Cov g_i given cluster k (identity where padded)


def task_predictive(
    post: MeanPosterior,
    task_cov: torch.Tensor,  # shape: (M, N, N) Sigma_i (without noise), identity where padded
    noise: torch.Tensor,  # shape: () or (M,)
    grid: TaskGrid,
) -> TaskPredictive:
    """Per-cluster Gaussian of each training task's latent at its own points."""
    N = grid.index.shape[1]
    eye = torch.eye(N, dtype=task_cov.dtype, device=task_cov.device)
    psi = torch.where(grid.pair_valid, task_cov + noise.reshape(-1, 1, 1) * eye, eye)
    sigma = torch.where(grid.pair_valid, task_cov, 0.0)
    A = torch.linalg.solve(psi, sigma).mT  # Sigma Psi^{-1}; both symmetric
    m = grid.gather(post.mean)  # (K, M, N)
    resid = torch.where(grid.valid, grid.y - m, 0.0)
    mean = m + (A @ resid[..., None])[..., 0]
    B = eye - A
    C = grid.gather_blocks(post.cov)  # (K, M, N, N)
    cov = B @ C @ B.mT + sigma - A @ sigma
    cov = torch.where(grid.pair_valid, 0.5 * (cov + cov.mT), eye)
    return TaskPredictive(mean, cov)


def _sqrt(covs: torch.Tensor) -> torch.Tensor:
    """A square root F F^T = cov that tolerates the near-singular covariances of smooth GPs."""
    vals, vecs = torch.linalg.eigh(covs)
    return vecs * vals.clamp_min(0.0).sqrt()[..., None, :]


def gaussian_draws(
    mean: torch.Tensor, cov: torch.Tensor, num_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Draws (S, ..., Q) of N(mean (..., Q), cov (..., Q, Q)); ``generator`` is a CPU one
    (the same draws on every device)."""
    z = torch.randn(num_samples, *mean.shape, generator=generator, dtype=mean.dtype)
    return mean + (_sqrt(cov) @ z.to(mean.device)[..., None])[..., 0]


def draw_mixture(
    weights: torch.Tensor,  # shape: (..., K) mixture weights per item
    means: torch.Tensor,  # shape: (K, ..., Q)
    covs: torch.Tensor,  # shape: (K, ..., Q, Q)
    num_samples: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws (S, ..., Q) of each item's Gaussian mixture, and the component of each (S, ...);
    drawn from the CPU ``generator`` and moved to the device of ``means``."""
    K, device = means.shape[0], means.device
    flat = weights.reshape(-1, K).cpu()  # a CPU generator draws from CPU inputs only
    comp = torch.multinomial(flat, num_samples, True, generator=generator)
    comp = comp.T.reshape(num_samples, *weights.shape[:-1]).to(device)
    z = torch.randn(num_samples, *means.shape[1:], generator=generator, dtype=means.dtype)
    z = z.to(device)
    idx = comp[..., None, None]  # pick each draw's component from the (..., K, ...) stacks
    mean = torch.take_along_dim(means.movedim(0, -2)[None], idx, dim=-2)[..., 0, :]
    root = torch.take_along_dim(_sqrt(covs).movedim(0, -3)[None], idx[..., None], dim=-3)
    return mean + (root[..., 0, :, :] @ z[..., None])[..., 0], comp
