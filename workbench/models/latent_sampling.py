"""Exact joint draws from a Gaussian-site posterior over state-space latents (Matheron's rule)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from workbench.inference import Sites, sites_to_observations
from workbench.ssm import sample_state_space_prior

__all__ = ["draw_latents"]


def draw_latents(
    latents: Sequence,  # MarkovGP priors, one per latent
    x: torch.Tensor,  # shape: (T,)
    sites: Sites,  # info/precision of shape (R, K, T)
    num_samples: int,
    seed: int = 0,
) -> torch.Tensor:
    r"""Draws of shape (num_samples, R, K, T) from :math:`q(x) \propto p(x)\prod_t \tilde t_t`.

    A prior draw :math:`x` is corrected by the smoother mean of
    :math:`\tilde y - (x + \varepsilon)` with :math:`\varepsilon \sim N(0, 1/\lambda)`:
    :math:`x + K_{\cdot o}(K_{oo} + \Lambda^{-1})^{-1}(\tilde y - x_o - \varepsilon)` has exactly
    the posterior distribution given the pseudo-observations.
    """
    g = torch.Generator().manual_seed(seed)
    R, T = sites.info.shape[0], x.shape[0]
    draws = []
    for k, latent in enumerate(latents):
        y_pseudo, noise, mask = sites_to_observations(
            Sites(sites.info[:, k], sites.precision[:, k])
        )
        prior = sample_state_space_prior(latent.kernel, x, num_samples * R, g)
        prior = prior.reshape(num_samples, R, T)
        eps = noise.sqrt() * torch.randn(prior.shape, generator=g, dtype=prior.dtype)
        with torch.no_grad():
            correction, _, _ = latent._cvi_smoother(x)(y_pseudo - prior - eps, noise, mask)
        draws.append(prior + correction)
    return torch.stack(draws, 2)
