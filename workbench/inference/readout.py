r"""Linear-readout expectations for latent-variable models (GPFA-style), per unit and bin.

With latents :math:`x_t \in \mathbb R^K` under a mean-field Gaussian :math:`q` (means
:math:`m_{kt}`, variances :math:`v_{kt}`) and :math:`\eta_{nt} = c_n^\top x_t + d_n`,

.. math::
    \mu_{nt} = c_n^\top m_t + d_n, \qquad s^2_{nt} = \sum_k c_{nk}^2 v_{kt},

and the expected log-likelihood :math:`E_{nt}(\mu, s^2)` pulls back to the latents by the chain
rule: :math:`\partial_{m_{kt}} = \sum_n c_{nk}\partial_\mu E_{nt}` and
:math:`\partial_{v_{kt}} = \sum_n c_{nk}^2 \partial_{s^2} E_{nt}`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from workbench.likelihoods import Likelihood

__all__ = [
    "LatentGradients",
    "joint_readout_moments",
    "latent_expectations",
    "readout_moments",
    "unit_expectations",
    "unit_gradients",
]


class LatentGradients(NamedTuple):
    value: torch.Tensor  # shape: (*batch,) summed expected log-likelihood
    d_mean: torch.Tensor  # shape: (*batch, K, T)
    d_var: torch.Tensor  # shape: (*batch, K, T)


def readout_moments(
    mean: torch.Tensor,  # shape: (*batch, K, T)
    var: torch.Tensor,  # shape: (*batch, K, T)
    C: torch.Tensor,  # shape: (N, K)
    d: torch.Tensor,  # shape: (N,)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of :math:`\\eta` (each (*batch, N, T))."""
    mu = torch.einsum("nk,...kt->...nt", C, mean).add_(d[:, None])  # in place: large arrays
    return mu, torch.einsum("nk,...kt->...nt", C.square(), var)


def joint_readout_moments(
    mean: torch.Tensor,  # shape: (*batch, K, T)
    cov: torch.Tensor,  # shape: (*batch, T, K, K) full latent covariance per bin
    C: torch.Tensor,  # shape: (N, K)
    d: torch.Tensor,  # shape: (N,)
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and variance :math:`c_n^\top V_t c_n` of :math:`\eta` (each (*batch, N, T))."""
    mu = torch.einsum("nk,...kt->...nt", C, mean) + d[:, None]
    return mu, torch.einsum("nk,...tkl,nl->...nt", C, cov, C)


def _masked(mask: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    if bool(mask.all()):  # complete data: skip the full-size selections
        return values
    return tuple(torch.where(mask, v, 0.0) for v in values)


def unit_expectations(
    likelihood: Likelihood,
    y: torch.Tensor,  # shape: (*batch, N, T)
    mask: torch.Tensor,  # shape: (*batch, N, T)
    mu: torch.Tensor,
    s2: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed expected log-likelihood and its (mu, s2) gradients per unit and bin (masked: 0)."""
    e = likelihood.expected_log_prob(y, mu, s2)
    value, d_mean, d_var = _masked(mask, e.value, e.d_mean, e.d_var)
    return value.sum((-2, -1)), d_mean, d_var


def unit_gradients(
    likelihood: Likelihood,
    y: torch.Tensor,  # shape: (*batch, N, T)
    mask: torch.Tensor,  # shape: (*batch, N, T)
    mu: torch.Tensor,
    s2: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, s2) gradients of the expected log-likelihood per unit and bin (masked: 0)."""
    return _masked(mask, *likelihood.expected_gradients(y, mu, s2))


def latent_expectations(
    likelihood: Likelihood,
    y: torch.Tensor,  # shape: (*batch, N, T)
    mask: torch.Tensor,  # shape: (*batch, N, T)
    mean: torch.Tensor,
    var: torch.Tensor,
    C: torch.Tensor,
    d: torch.Tensor,
) -> LatentGradients:
    """Expected log-likelihood and its gradients in the latent marginals (masked bins: 0)."""
    value, g_mu, g_s2 = unit_expectations(likelihood, y, mask, *readout_moments(mean, var, C, d))
    return LatentGradients(
        value,
        torch.einsum("nk,...nt->...kt", C, g_mu),
        torch.einsum("nk,...nt->...kt", C.square(), g_s2),
    )
