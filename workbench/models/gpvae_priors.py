r"""The GP priors of the GP-VAEs and their amortised posteriors, as Pyro sample sites.

Each turns pooled pseudo-observations (precision :math:`\lambda_{kt}` and precision-weighted
mean :math:`\lambda_{kt}\mu_{kt}`, shape (trial, K, T)) into q and give the site distributions:

- ``fourier`` (default): squared-exponential latents on Fourier coefficients
  (:mod:`workbench.inference.fourier`) with the diagonal of the conjugate q (the MM-GPVAE's
  mean-field q), O(TF); ``fourier_exact``: the full conjugate q, O(TF² + F³).
- ``statespace``: Matérn-5/2 latents in state-space form; q is the exact conjugate posterior
  of the pseudo-observations by Kalman smoothing (:mod:`workbench.inference.pseudo_posterior`),
  O(T), for long or variable-length trials. Its site carries the KL to the prior (registered
  with ``kl_divergence``) and draws each bin from its marginal, which is all a likelihood that
  factorises over bins needs.
"""

from __future__ import annotations

import math
from typing import ClassVar

import pyro.distributions as dist
import torch
from torch.distributions import constraints
from torch.distributions.kl import register_kl

from workbench.inference.fourier import fourier_basis, rbf_spectrum, time_moments
from workbench.inference.pseudo_posterior import matern_pseudo_posterior
from workbench.kernels.statespace import matern_sde as ms

__all__ = ["FourierPrior", "MarkovPosterior", "MarkovPrior", "StateSpacePrior", "make_prior"]


class FourierPrior:
    """Squared-exponential GP latents on a truncated real Fourier basis.

    With ``diagonal`` (the default, the MM-GPVAE's mean-field q, :math:`O(TF)`) q keeps the
    diagonal of the conjugate precision; otherwise it is the exact conjugate posterior of the
    pseudo-observations on the coefficients, precision
    :math:`P = \\mathrm{diag}(c)^{-1} + B\\Lambda B^\\top` (F x F per latent and trial,
    :math:`O(TF^2 + F^3)`).
    """

    def __init__(self, lengthscale_bins: float, diagonal: bool = True) -> None:
        self.ell, self.diagonal = lengthscale_bins, diagonal
        self.name = "fourier" if diagonal else "fourier_exact"

    def _basis(self, n_bins: int, dtype, device=None):
        n_circle = n_bins + math.ceil(8 * self.ell)  # on the device of the data it multiplies
        return fourier_basis(n_bins, 0.5 * self.ell, n_circle=n_circle, dtype=dtype, device=device)

    def posterior(self, precision, weighted, lengthscale):
        """Guide distribution and q's time marginals (mean, var), each (trial, K, T)."""
        basis = self._basis(precision.shape[-1], precision.dtype, precision.device)
        prior = rbf_spectrum(basis, lengthscale)
        B = basis.matrix
        if self.diagonal:
            total = 1.0 / prior + precision @ B.square().T
            mean, std = (weighted @ B.T) / total, total.rsqrt()
            return dist.Normal(mean, std).to_event(2), time_moments(basis, mean, std)
        P = torch.diag_embed(1.0 / prior) + (B * precision[..., None, :]) @ B.T
        P = 0.5 * (P + P.mT)  # exactly symmetric in float32 too
        L = torch.linalg.cholesky(P)
        mean = torch.cholesky_solve((weighted @ B.T)[..., None], L)[..., 0]
        spread = torch.linalg.solve_triangular(L, B.expand(*P.shape[:-1], -1), upper=False)
        law = dist.MultivariateNormal(mean, precision_matrix=P, validate_args=False)
        law = law.to_event(1)
        return law, (mean @ B, spread.square().sum(-2))

    def site(self, lengthscale, n_trials: int, n_bins: int, like: torch.Tensor):
        """The model's distribution of the coefficients (trial, K, F)."""
        c = rbf_spectrum(self._basis(n_bins, like.dtype, like.device), lengthscale)
        if self.diagonal:
            law = dist.Normal(torch.zeros_like(c), c.sqrt())
            return law.expand([n_trials, *c.shape]).to_event(2)
        law = dist.MultivariateNormal(torch.zeros_like(c), scale_tril=torch.diag_embed(c.sqrt()))
        return law.expand([n_trials, c.shape[0]]).to_event(1)

    def to_time(self, value: torch.Tensor, n_bins: int) -> torch.Tensor:
        """Latent series (trial, K, T) from coefficients."""
        return value @ self._basis(n_bins, value.dtype, value.device).matrix


class MarkovPrior(dist.TorchDistribution):
    """Independent unit-variance Matérn-5/2 series (K, T) per trial on a unit grid."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.real, 2)

    def __init__(self, lengthscale: torch.Tensor, n_trials: int, n_bins: int) -> None:
        self.lengthscale = lengthscale
        super().__init__(
            torch.Size([n_trials]), torch.Size([len(lengthscale), n_bins]), validate_args=False
        )

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        if batch_shape == self.batch_shape:  # Pyro's plates expand every site
            return self
        if len(batch_shape) != 1:
            raise ValueError(f"expected one batch dim (trials), got {tuple(batch_shape)}")
        return MarkovPrior(self.lengthscale, batch_shape[0], self.event_shape[1])

    def _gaussian(self) -> dist.MultivariateNormal:
        T = self.event_shape[1]
        t = torch.arange(T, dtype=self.lengthscale.dtype, device=self.lengthscale.device)
        one = torch.ones((), dtype=t.dtype, device=t.device)
        K = torch.stack(
            [ms.matern_covariance(2, ell, one, t[:, None] - t) for ell in self.lengthscale]
        )
        K = K + 1e-6 * torch.eye(T, dtype=t.dtype, device=t.device)
        return dist.MultivariateNormal(torch.zeros(T, dtype=t.dtype, device=t.device), K)

    def sample(self, sample_shape=()):
        """Dense O(T^3) draws (prior predictive checks only)."""
        return self._gaussian().sample(torch.Size(sample_shape) + self.batch_shape)

    def log_prob(self, value):
        return self._gaussian().log_prob(value).sum(-1)


class MarkovPosterior(dist.TorchDistribution):
    """q of the state-space prior: marginal means and variances (trial, K, T) plus its KL."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, mean: torch.Tensor, var: torch.Tensor, kl: torch.Tensor) -> None:
        self.loc, self.var, self.kl = mean, var, kl
        super().__init__(mean.shape[:1], mean.shape[1:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        if batch_shape == self.batch_shape:  # Pyro's plates expand every site
            return self
        shape = batch_shape + self.event_shape
        return MarkovPosterior(
            self.loc.expand(shape), self.var.expand(shape), self.kl.expand(batch_shape)
        )

    def rsample(self, sample_shape=()):
        noise = torch.randn(
            torch.Size(sample_shape) + self.loc.shape, dtype=self.loc.dtype, device=self.loc.device
        )
        return self.loc + self.var.sqrt() * noise

    def log_prob(self, value):
        """Density of the draws (independent marginals); the ELBO's KL is the registered one."""
        return dist.Normal(self.loc, self.var.sqrt()).log_prob(value).sum((-1, -2))


@register_kl(MarkovPosterior, MarkovPrior)
def _markov_kl(q: MarkovPosterior, p: MarkovPrior) -> torch.Tensor:
    return q.kl


class StateSpacePrior:
    """Matérn-5/2 latents with the Kalman-smoothed conjugate q."""

    name = "statespace"

    def __init__(self, lengthscale_bins: float) -> None:
        self.ell = lengthscale_bins

    def posterior(self, precision, weighted, lengthscale):
        mu = weighted / precision.clamp_min(1e-12)
        parts = [
            matern_pseudo_posterior(mu[:, k], precision[:, k], lengthscale[k])
            for k in range(mu.shape[1])
        ]
        mean = torch.stack([p.mean for p in parts], 1)
        var = torch.stack([p.var for p in parts], 1)
        kl = torch.stack([p.kl for p in parts], 1).sum(1)
        return MarkovPosterior(mean, var, kl), (mean, var)

    def site(self, lengthscale, n_trials, n_bins, like):
        return MarkovPrior(lengthscale, n_trials, n_bins)

    def to_time(self, value: torch.Tensor, n_bins: int) -> torch.Tensor:
        return value


def make_prior(name: str, lengthscale_bins: float):
    """``"fourier"`` (diagonal q), ``"fourier_exact"`` or ``"statespace"``."""
    if name == "fourier_exact":
        return FourierPrior(lengthscale_bins, diagonal=False)
    priors = {"fourier": FourierPrior, "statespace": StateSpacePrior}
    if name not in priors:
        raise ValueError(f"expected prior in {(*priors, 'fourier_exact')}, got {name!r}")
    return priors[name](lengthscale_bins)
