"""Draws of observations :math:`y \\sim p(y \\mid f)` for posterior-predictive checks."""

from __future__ import annotations

import torch

from workbench.likelihoods.base import Likelihood
from workbench.likelihoods.bernoulli import Bernoulli
from workbench.likelihoods.gaussian import Gaussian
from workbench.likelihoods.negative_binomial import NegativeBinomial
from workbench.likelihoods.poisson import Poisson
from workbench.likelihoods.student_t import StudentT

__all__ = ["sample_observations"]


def sample_observations(
    likelihood: Likelihood,
    f: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    seed: int = 0,
) -> torch.Tensor:
    """One draw of y for every latent value in ``f`` (any shape), reproducible by ``generator``
    (or, without one, by ``seed``: a fresh CPU generator; torch's global RNG is never used).

    Gaussian: :math:`f + \\sigma\\varepsilon`; Poisson: counts at :meth:`Poisson.rate`;
    Bernoulli: 0/1 at the link's probability; negative binomial: a gamma-Poisson mixture with
    mean :math:`\\Delta e^f` and the model's dispersion; Student-t: :math:`f + s\\,t_\\nu`.
    """
    generator = torch.Generator().manual_seed(seed) if generator is None else generator
    with torch.no_grad():
        if isinstance(likelihood, Gaussian):
            return f + likelihood.noise.to(f).sqrt() * _normal(f, generator)
        if isinstance(likelihood, Poisson):
            return _on(torch.poisson, likelihood.rate(f), generator)
        if isinstance(likelihood, Bernoulli):
            p = torch.sigmoid(f) if likelihood.link == "logit" else torch.special.ndtr(f)
            return _on(torch.bernoulli, p, generator)
        if isinstance(likelihood, NegativeBinomial):
            r = likelihood.dispersion.to(f)
            mean = likelihood.bin_width * torch.exp(f)
            rate = _gamma(r.expand_as(f), generator) * mean / r
            return _on(torch.poisson, rate, generator)
        if isinstance(likelihood, StudentT):
            nu, s = likelihood.df.to(f), likelihood.scale.to(f)
            precision = _gamma((0.5 * nu).expand_as(f), generator) / (0.5 * nu)
            return f + s * _normal(f, generator) / precision.sqrt()
    raise NotImplementedError(
        f"expected a Gaussian, Poisson, Bernoulli, NegativeBinomial or StudentT likelihood, "
        f"got {type(likelihood).__name__}"
    )


def _on(draw, param: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``draw(param)`` on the generator's device (torch samplers need the two together)."""
    return draw(param.to(generator.device), generator=generator).to(param.device)


def _normal(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    draws = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=generator.device)
    return draws.to(like.device)


def _gamma(shape: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gamma(shape, 1) draws; torch's gamma sampler takes no generator, so it runs under a
    forked global RNG seeded from ``generator`` (the caller's global state is untouched)."""
    seed = int(torch.randint(2**62, (1,), generator=generator))
    devices = [shape.device] if shape.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return torch.distributions.Gamma(shape, torch.ones_like(shape)).sample()
