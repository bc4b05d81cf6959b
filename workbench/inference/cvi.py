r"""Conjugate-computation variational inference (CVI) with Gaussian sites on a latent GP.

The approximation is :math:`q(f) \propto p(f)\prod_t \exp(j_t f_t - \tfrac12 \lambda_t f_t^2)`
with site information :math:`j_t` and precision :math:`\lambda_t \ge 0`. One step moves the
sites along the natural gradient of the ELBO,

.. math::
    \lambda_t \leftarrow (1-\beta)\lambda_t + \beta(-2\,\partial_v E_t), \qquad
    j_t \leftarrow (1-\beta) j_t + \beta(\partial_m E_t - 2\,\partial_v E_t\, m_t),

with :math:`E_t = \mathbb E_{N(m_t, v_t)}\log p(y_t \mid f_t)` at the current marginals, then
recomputes the marginals with any Gaussian smoother: a site is a Gaussian pseudo-observation
:math:`\tilde y_t = j_t/\lambda_t` with noise :math:`1/\lambda_t`, and
:math:`\lambda_t = 0` (missing bins) is simply unobserved. With a Gaussian likelihood and
:math:`\beta = 1` one step gives the exact posterior.

References
----------
1. M. E. Khan and W. Lin, "Conjugate-computation variational inference", AISTATS 2017.
2. P. E. Chang, W. J. Wilkinson, M. E. Khan and A. Solin, "Fast variational learning in
   state-space Gaussian process models", MLSP 2020.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from workbench.likelihoods import Likelihood

__all__ = [
    "CVIResult",
    "Sites",
    "cvi",
    "cvi_elbo",
    "cvi_site_update",
    "site_kl",
    "sites_to_observations",
]

#: ``smoother(y_pseudo, noise, mask) -> (mean, var, log_marginal)`` of the latent f.
Smoother = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]

_FLOOR = 1e-12


class Sites(NamedTuple):
    info: torch.Tensor  # shape: (*batch, T) j_t
    precision: torch.Tensor  # shape: (*batch, T) lambda_t >= 0


class CVIResult(NamedTuple):
    sites: Sites
    mean: torch.Tensor  # shape: (*batch, T) marginal means of q(f)
    var: torch.Tensor  # shape: (*batch, T) marginal variances
    elbo: list[float]  # summed over the batch, after each step


def sites_to_observations(sites: Sites) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pseudo-observations ``(y, noise, mask)``; sites with zero precision are unobserved."""
    mask = sites.precision > _FLOOR
    safe = torch.where(mask, sites.precision, torch.ones_like(sites.precision))
    return torch.where(mask, sites.info / safe, torch.zeros_like(safe)), 1.0 / safe, mask


def cvi_site_update(
    sites: Sites,
    y: torch.Tensor,  # shape: (*batch, T)
    mask: torch.Tensor,  # shape: (*batch, T) observed bins
    mean: torch.Tensor,  # shape: (*batch, T)
    var: torch.Tensor,  # shape: (*batch, T)
    likelihood: Likelihood,
    lr: float,
) -> Sites:
    """One damped natural-gradient step on the sites (precisions projected to >= 0)."""
    expected = likelihood.expected_log_prob(y, mean, var)
    precision = (-2.0 * expected.d_var).clamp_min(0.0)  # PSD projection (non-log-concave p)
    info = expected.d_mean + precision * mean
    zero = torch.zeros_like(mean)
    precision = torch.where(mask, (1 - lr) * sites.precision + lr * precision, zero)
    info = torch.where(mask, (1 - lr) * sites.info + lr * info, zero)
    return Sites(info, precision)


def site_kl(
    sites: Sites,
    mean: torch.Tensor,  # shape: (*batch, T) marginals of q
    var: torch.Tensor,
    log_marginal_pseudo: torch.Tensor,  # shape: (*batch,) from the smoother's filter
) -> torch.Tensor:
    r""":math:`\mathrm{KL}(q\,\|\,p) = \sum_t \mathbb E_q[\log \tilde t_t] - \log Z` per series.

    :math:`\log Z = \log \int p(f)\prod_t \tilde t_t(f_t)\,df` is the pseudo-data marginal
    likelihood plus the Gaussian normalisers of the sites.
    """
    _, _, site_mask = sites_to_observations(sites)
    lam = torch.where(site_mask, sites.precision, torch.ones_like(sites.precision))
    normaliser = 0.5 * (math.log(2 * math.pi) - torch.log(lam)) + 0.5 * sites.info.square() / lam
    log_z = log_marginal_pseudo + torch.where(site_mask, normaliser, 0.0).sum(-1)
    e_log_sites = sites.info * mean - 0.5 * sites.precision * (mean.square() + var)
    return e_log_sites.sum(-1) - log_z


def cvi_elbo(
    y: torch.Tensor,
    mask: torch.Tensor,
    likelihood: Likelihood,
    sites: Sites,
    mean: torch.Tensor,
    var: torch.Tensor,
    log_marginal_pseudo: torch.Tensor,  # shape: (*batch,) from the smoother's filter
) -> torch.Tensor:
    r"""ELBO per series: :math:`\sum_t E_t - \mathrm{KL}(q\,\|\,p)` (see :func:`site_kl`)."""
    expected = likelihood.expected_log_prob(y, mean, var).value
    kl = site_kl(sites, mean, var, log_marginal_pseudo)
    return torch.where(mask, expected, 0.0).sum(-1) - kl


def cvi(
    y: torch.Tensor,  # shape: (*batch, T), any value where unobserved
    mask: torch.Tensor,  # shape: (*batch, T)
    likelihood: Likelihood,
    smoother: Smoother,
    *,
    steps: int = 20,
    lr: float = 1.0,
    sites: Sites | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> CVIResult:
    """Run ``steps`` CVI iterations from ``sites`` (default: no information, i.e. the prior)."""
    if sites is None:
        sites = Sites(torch.zeros_like(y), torch.zeros_like(y))
    trace: list[float] = []
    mean, var, log_marginal = smoother(*sites_to_observations(sites))
    for step in range(steps):
        sites = cvi_site_update(sites, y, mask, mean, var, likelihood, lr)
        mean, var, log_marginal = smoother(*sites_to_observations(sites))
        value = cvi_elbo(y, mask, likelihood, sites, mean, var, log_marginal).sum().item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"CVI produced a non-finite ELBO at step {step}; use a smaller lr (damping)"
            )
        trace.append(value)
        if callback is not None:
            callback(step, value)
    return CVIResult(sites, mean, var, trace)
