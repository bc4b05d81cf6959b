r"""New-task prediction of Magma / MagmaClust: per-cluster GP predictions and their mixture.

With the mean-process posteriors recomputed on the union of the training grid, the new task's
inputs :math:`t_*` and the prediction inputs :math:`t^p`, and
:math:`\Gamma_k = \hat C_k + \Sigma_{\theta_*} + \sigma_*^2 I_{t_*}` on :math:`(t_*, t^p)`,

.. math::
    \hat\mu_{*k} = \hat m_k(t^p) + \Gamma_k(t^p, t_*)\Gamma_k(t_*, t_*)^{-1}
        (y_* - \hat m_k(t_*)), \quad
    \hat\Gamma_{*k} = \Gamma_k(t^p, t^p) - \Gamma_k(t^p, t_*)\Gamma_k(t_*, t_*)^{-1}
        \Gamma_k(t_*, t^p),

    \tau_{*k} \propto \pi_k\,N(y_*; \hat m_k(t_*), \Gamma_k(t_*, t_*))

(the exact marginal with :math:`\mu_k` integrated out, as in the paper's code), and the
predictive is the mixture :math:`\sum_k \tau_{*k} N(\hat\mu_{*k}, \hat\Gamma_{*k})`.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch

from workbench.kernels.batched import dense_kernel
from workbench.models.training import optimize

__all__ = ["ClusterPrediction", "fit_new_task_kernel", "predict_clusters"]


class ClusterPrediction(NamedTuple):
    mean: torch.Tensor  # shape: (K, Q) per-cluster predictive means at t^p
    cov: torch.Tensor  # shape: (K, Q, Q) per-cluster predictive covariances (latent, no noise)
    membership: torch.Tensor  # shape: (K,) tau_*k
    log_marginal: torch.Tensor  # shape: (K,) log N(y_*; hat m_k(t_*), Gamma_k(t_*, t_*))


def predict_clusters(
    post_mean: torch.Tensor,  # shape: (K, P) mean processes on a grid holding t_* and t^p
    post_cov: torch.Tensor,  # shape: (K, P, P)
    task_cov: torch.Tensor,  # shape: (P, P) Sigma_theta* on the same grid
    noise: torch.Tensor,  # shape: () sigma_*^2
    observed: torch.Tensor,  # shape: (n,) grid indices of t_*
    y: torch.Tensor,  # shape: (n,)
    targets: torch.Tensor,  # shape: (Q,) grid indices of t^p
    log_pi: torch.Tensor,  # shape: (K,)
) -> ClusterPrediction:
    gamma = post_cov + task_cov
    g_oo = gamma[:, observed[:, None], observed[None, :]]
    g_oo = g_oo + noise * torch.eye(observed.shape[0], dtype=g_oo.dtype, device=g_oo.device)
    g_po = gamma[:, targets[:, None], observed[None, :]]
    g_pp = gamma[:, targets[:, None], targets[None, :]]
    L = torch.linalg.cholesky(g_oo)
    resid = (y - post_mean[:, observed])[..., None]
    alpha = torch.cholesky_solve(resid, L)
    mean = post_mean[:, targets] + (g_po @ alpha)[..., 0]
    V = torch.linalg.solve_triangular(L, g_po.mT, upper=False)
    cov = g_pp - V.mT @ V
    z = torch.linalg.solve_triangular(L, resid, upper=False)
    n = observed.shape[0]
    log_marginal = -0.5 * (
        z.square().sum((-2, -1))
        + 2 * L.diagonal(0, -2, -1).log().sum(-1)
        + n * torch.log(torch.tensor(2 * torch.pi, dtype=y.dtype))
    )
    membership = torch.softmax(log_pi + log_marginal, 0)
    return ClusterPrediction(mean, 0.5 * (cov + cov.mT), membership, log_marginal)


def fit_new_task_kernel(model, post, observed, y, x_all):
    r"""Task-specific hyper-parameters (``H0i``/``Hki``) for a new task: its kernel and noise
    maximising the exact mixture marginal :math:`\sum_k \pi_k N(y_*; \hat m_k, \Gamma_k)`,
    started at the training tasks' average."""
    kernel = copy.deepcopy(model._templates[1]).double()
    trained = dict(model.task_kernel.named_parameters())
    for name, param in kernel.named_parameters():
        param.data.copy_(trained[name].detach().mean(0))
    raw_noise = torch.nn.Parameter(model.raw_noise.detach().mean().clone())
    transform = model.raw_noise_constraint.transform
    holder = torch.nn.Module()
    holder.kernel, holder.raw_noise = kernel, raw_noise
    holder.to(model.device)  # the template is a plain list entry that model.to() never moved

    def loss() -> torch.Tensor:
        task_cov = dense_kernel(kernel, x_all[:, None], x_all[:, None])
        pred = predict_clusters(
            post.mean, post.cov, task_cov, transform(raw_noise), observed, y, observed[:1],
            model.log_pi,
        )  # fmt: skip
        return -torch.logsumexp(model.log_pi + pred.log_marginal, 0)

    optimize(holder, loss, steps=1, lr=1.0, optimizer="lbfgs", progress=False, max_iter=50)
    return kernel, transform(raw_noise).detach()
