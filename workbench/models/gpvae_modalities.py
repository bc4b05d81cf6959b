r"""Per-modality encoders and observation models of the GP-VAEs.

Every encoder works frame by frame and then mixes neighbouring bins with one 1-D convolution,
so it is not tied to a trial length. It returns, for each of the modality's latents, Gaussian
pseudo-observations of the latent series: means :math:`\mu_t` and precisions :math:`\lambda_t`
(zero where the frame is missing). Decoders map the latent values of one bin to that bin's
observation; their expected log-likelihoods under the time marginals of q are either exact
(Poisson with the linear-exp readout) or use the reparameterised sample of the latents.
"""

from __future__ import annotations

import itertools

import pyro
import pyro.distributions as dist
import torch
from gpytorch.constraints import Positive
from torch import nn

__all__ = ["DecodedModality", "Modality", "PoissonModality", "make_modality"]

_KINDS = ("poisson", "gaussian", "bernoulli")


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ELU()]
    return nn.Sequential(*layers)


class Modality(nn.Module):
    """Encoder of one modality plus its observation model for ``n_latents`` latents (the
    shared ones first)."""

    kind = ""

    def __init__(self, n_features: int, n_latents: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.n_features, self.n_latents = n_features, n_latents
        self.frame_encoder = _mlp([n_features, *hidden])
        self.temporal = nn.Conv1d(hidden[-1], 2 * n_latents, kernel_size=5, padding=2)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder input from observations (trial, time, features) with missing set to 0."""
        return x

    def encode(self, x: torch.Tensor, seen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pseudo-observation means and precisions (trial, latent, time)."""
        h = self.frame_encoder(self.prepare(x)) * seen[..., None]
        out = self.temporal(h.transpose(1, 2))
        mean, log_precision = out.split(self.n_latents, dim=1)
        precision = torch.exp(log_precision.clamp(-12.0, 12.0)) * seen[:, None, :]
        return mean, precision

    def observe(self, name: str, x, observed, z, mean, var, closed_form: bool) -> None:
        """The Pyro observation statement of this modality given latents z (trial, latent,
        time) sampled from q, with q's marginal moments alongside; ``observed`` (trial, time,
        features) masks missing values out."""
        raise NotImplementedError

    def reconstruct(self, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """Predicted observation (trial, time, features) from q's latent marginals: the
        exact expectation for Poisson counts, the decoder at the latent mean otherwise."""
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor, observed: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x_t | z_t) summed over the observed features, (trial, time)."""
        raise NotImplementedError

    def sample(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One draw of x given latents z (trial, latent, time): (trial, time, features)."""
        raise NotImplementedError


class PoissonModality(Modality):
    r"""Spike counts with the GPFA-style readout :math:`y_{nt} \sim
    \mathrm{Poisson}(\exp(w_n^\top z_t + d_n))`; its expectation under Gaussian latents is
    closed-form, :math:`\sum y\bar\eta - \exp(\bar\eta + \tfrac12\sum_k w_{nk}^2 v_{kt})
    - \log y!`."""

    kind = "poisson"

    def __init__(self, n_features: int, n_latents: int, hidden=(128, 64)) -> None:
        super().__init__(n_features, n_latents, hidden)
        self.loading = nn.Parameter(0.1 * torch.randn(n_features, n_latents))
        self.bias = nn.Parameter(torch.zeros(n_features))

    def prepare(self, x):
        return torch.log1p(x)

    def start(self, x: torch.Tensor, observed: torch.Tensor) -> None:
        """Biases at the log mean count of each unit."""
        counts = (x * observed).sum((0, 1)) / observed.sum((0, 1)).clamp_min(1)
        with torch.no_grad():
            self.bias.copy_(torch.log(counts.clamp_min(1e-3)))

    def _eta(self, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("rkt,nk->rtn", z, self.loading) + self.bias

    def expected_log_prob(self, x, observed, mean, var) -> torch.Tensor:
        """Exact :math:`E_q \\log p(x \\mid z)` per trial (trial,)."""
        eta = self._eta(mean)
        spread = 0.5 * torch.einsum("rkt,nk->rtn", var, self.loading.square())
        value = x * eta - torch.exp(eta + spread) - torch.lgamma(x + 1)
        return (value * observed).sum((-1, -2))

    def observe(self, name, x, observed, z, mean, var, closed_form):
        if closed_form:
            pyro.factor(name, self.expected_log_prob(x, observed, mean, var))
        else:
            law = dist.Poisson(torch.exp(self._eta(z))).mask(observed.bool()).to_event(2)
            pyro.sample(name, law, obs=x)

    def reconstruct(self, mean, var):
        spread = 0.5 * torch.einsum("rkt,nk->rtn", var, self.loading.square())
        return torch.exp(self._eta(mean) + spread)

    def log_prob(self, x, observed, z):
        return (dist.Poisson(torch.exp(self._eta(z))).log_prob(x) * observed).sum(-1)

    def sample(self, z, generator):
        rate = torch.exp(self._eta(z))  # a CPU generator draws from CPU rates only
        return torch.poisson(rate.cpu(), generator=generator).to(rate.device)


class DecodedModality(Modality):
    """A neural decoder per bin: Gaussian (learned noise variance) or Bernoulli features;
    images (``image_shape`` given) may use a transposed-convolution decoder."""

    def __init__(
        self,
        n_features: int,
        n_latents: int,
        kind: str,
        *,
        hidden=(256, 128),
        decoder: str = "mlp",
        image_shape: tuple[int, int] | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__(n_features, n_latents, hidden)
        # Gaussian values reach the networks divided by scale (counts and 0/1 values as they are)
        self.kind, self.scale = kind, float(scale) if kind == "gaussian" else 1.0
        if decoder == "conv":
            if image_shape is None or image_shape[0] % 4 or image_shape[1] % 4:
                raise ValueError(
                    f"expected images with sides divisible by 4 for decoder='conv', "
                    f"got {image_shape}"
                )
            self.decoder = _ConvDecoder(n_latents, image_shape)
        elif decoder == "mlp":
            self.decoder = nn.Sequential(
                _mlp([n_latents, *hidden[::-1]]), nn.Linear(hidden[0], n_features)
            )
        else:
            raise ValueError(f"expected decoder in ('mlp', 'conv'), got {decoder!r}")
        self.raw_noise_constraint = Positive()
        start = self.raw_noise_constraint.inverse_transform(torch.tensor(0.01))
        self.raw_noise = nn.Parameter(start)

    @property
    def noise(self) -> torch.Tensor:
        """Variance of the Gaussian features."""
        return self.raw_noise_constraint.transform(self.raw_noise)

    def start(self, x: torch.Tensor, observed: torch.Tensor) -> None:
        """Noise variance at a tenth of the data's variance (of its mean square when the data
        are constant or a single value), at least 1e-6 on the networks' scale."""
        if self.kind == "gaussian":
            with torch.no_grad():
                seen = x[observed.bool()].double()
                var = float(seen.var()) if seen.numel() > 1 else 0.0
                var = var if var > 0 else float(seen.square().mean())
                start = torch.tensor(0.1 * var + 1e-6 * self.scale**2)
                self.raw_noise.fill_(float(self.raw_noise_constraint.inverse_transform(start)))

    def prepare(self, x):
        return x / self.scale

    def _distribution(self, z: torch.Tensor):  # z: (..., latent, time)
        out = self.decoder(z.transpose(-1, -2))
        if self.kind == "bernoulli":
            return dist.Bernoulli(logits=out, validate_args=False)
        return dist.Normal(self.scale * out, self.noise.sqrt())

    def observe(self, name, x, observed, z, mean, var, closed_form):
        law = self._distribution(z).mask(observed.bool()).to_event(2)
        pyro.sample(name, law, obs=x)

    def reconstruct(self, mean, var):
        return self._distribution(mean).mean

    def log_prob(self, x, observed, z):
        return (self._distribution(z).log_prob(x) * observed).sum(-1)

    def sample(self, z, generator):
        law = self._distribution(z)
        if self.kind == "bernoulli":  # a CPU generator draws from CPU inputs only
            return torch.bernoulli(law.probs.cpu(), generator=generator).to(law.probs.device)
        eps = torch.randn(law.loc.shape, generator=generator, dtype=law.loc.dtype)
        return law.loc + law.scale * eps.to(law.loc.device)


class _ConvDecoder(nn.Module):
    def __init__(self, n_latents: int, shape: tuple[int, int]) -> None:
        super().__init__()
        self.shape = (shape[0] // 4, shape[1] // 4)
        self.project = nn.Sequential(
            nn.Linear(n_latents, 32 * self.shape[0] * self.shape[1]), nn.ELU()
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
            nn.ELU(),
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (..., latent) -> (..., pixels)
        lead = z.shape[:-1]
        h = self.project(z.reshape(-1, z.shape[-1])).reshape(-1, 32, *self.shape)
        return self.up(h).reshape(*lead, -1)


def make_modality(
    kind: str,
    n_features: int,
    n_latents: int,
    *,
    decoder: str = "mlp",
    image_shape: tuple[int, int] | None = None,
    scale: float = 1.0,
) -> Modality:
    """The modality for likelihood ``kind`` in ("poisson", "gaussian", "bernoulli"); decoded
    modalities see values divided by ``scale`` (see :func:`~workbench.data.multimodal.describe`)."""
    if kind not in _KINDS:
        raise ValueError(f"expected a modality likelihood in {_KINDS}, got {kind!r}")
    if kind == "poisson":
        return PoissonModality(n_features, n_latents)
    return DecodedModality(
        n_features, n_latents, kind, decoder=decoder, image_shape=image_shape, scale=scale
    )
