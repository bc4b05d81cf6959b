"""Exact joint draws from a Gaussian-site posterior over state-space latents (Matheron's rule)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from workbench.models.latent_estep import LatentState, smooth
from workbench.ssm import sample_state_space_prior

__all__ = ["draw_latents"]


def _site_noise(precision: torch.Tensor, joint: bool, n: int, g: torch.Generator):
    """n draws of eps_t ~ N(0, J_t), shaped like the site vectors (n, K, L)."""
    if not joint:
        z = _randn((n, *precision.shape[1:]), g, precision)
        return precision.clamp_min(0.0).sqrt() * z
    lam, V = torch.linalg.eigh(precision[0])  # (L, K), (L, K, K)
    z = _randn((n, *lam.shape), g, lam) * lam.clamp_min(0.0).sqrt()
    return torch.einsum("tkl,ntl->nkt", V, z)


def _randn(shape: tuple, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normals drawn on the generator's device (seeded draws are the same on every
    device) and moved next to ``like``."""
    return torch.randn(shape, generator=g, dtype=like.dtype, device=g.device).to(like.device)


def draw_latents(
    latents: Sequence,  # MarkovGP priors, one per latent
    x: torch.Tensor,  # shape: (L,) packed bin times
    starts: torch.Tensor,  # shape: (L,) trial starts
    state: LatentState,
    num_samples: int,
    seed: int = 0,
    chunk: int = 16,
) -> torch.Tensor:
    r"""Draws of shape (num_samples, K, L) from :math:`q(x) \propto p(x)\prod_t \tilde t_t(x_t)`.

    A prior draw :math:`x` and :math:`\varepsilon_t \sim N(0, J_t)` give
    :math:`x + \Sigma(j - Jx - \varepsilon)`, where :math:`\Sigma v` is the posterior mean with
    site vectors v (one smoothing pass): its mean is :math:`\Sigma j` and its covariance
    :math:`\Sigma K^{-1} K K^{-1}\Sigma + \Sigma J \Sigma = \Sigma`, exactly q, with no
    :math:`J^{-1}` (singular site precisions are fine).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        prior = torch.stack(
            [sample_state_space_prior(m.kernel, x, num_samples, g, starts) for m in latents], 1
        )
        eps = _site_noise(state.precision, state.joint, num_samples, g)
        if state.joint:
            Jx = torch.einsum("tkl,nlt->nkt", state.precision[0], prior)
        else:
            Jx = state.precision * prior
        info = state.info - Jx - eps
        draws = []
        for lo in range(0, num_samples, chunk):
            part = info[lo : lo + chunk]
            precision = state.precision.expand(part.shape[0], *state.precision.shape[1:])
            corrected = smooth(latents, x, starts, part, precision, state.joint)
            draws.append(prior[lo : lo + chunk] + corrected.mean)
    return torch.cat(draws)
