r"""Fourier-domain GP latents (the ASD representation used by the MM-GPVAE).

A latent series :math:`z \in \mathbb R^T` is written as :math:`z = B^\top \tilde z` with real
Fourier coefficients :math:`\tilde z \in \mathbb R^F` on a circle of :math:`N > T` points. For
a squared-exponential kernel :math:`k(\tau) = \exp(-\tau^2 / 2\ell^2)` (time in bins) the
coefficients are independent, :math:`\tilde z_w \sim N(0, c_w)` with

.. math::
    c_w = \sqrt{2\pi}\,\ell\,\exp(-\tfrac12 \omega_w^2 \ell^2) + \epsilon,
    \qquad \omega_w = 2\pi w / N,

so :math:`B^\top \mathrm{diag}(c) B` approximates the Gram matrix on the first T points; the
circular wrap-around is negligible when :math:`N \ge T + 4\ell`. Frequencies whose prior
variance is below :math:`\kappa^{-1}` of the largest one at the shortest lengthscale
:math:`\ell_{\min}` are dropped:
:math:`w_{\max} = \lfloor N \sqrt{\ln(\kappa)/2} / (\pi \ell_{\min}) \rfloor` (cosines
:math:`0..w_{\max}-1`, sines :math:`1..w_{\max}`, so :math:`F = 2 w_{\max}`), the reference
code's rule. Everything costs :math:`O(TF)` per latent.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = [
    "FourierBasis",
    "coefficient_kl",
    "fourier_basis",
    "rbf_spectrum",
    "time_moments",
]


class FourierBasis(NamedTuple):
    matrix: torch.Tensor  # shape: (F, T) rows orthonormal over the full circle of N points
    frequencies: torch.Tensor  # shape: (F,) integer frequency w of each row
    n_circle: int  # N


def fourier_basis(
    n_bins: int,
    min_lengthscale: float,
    *,
    n_circle: int | None = None,
    condition: float = 1e8,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> FourierBasis:
    """The truncated real DFT basis on the first ``n_bins`` of a circle of ``n_circle`` points
    (default :math:`\\lceil T + 4\\ell_{\\min} \\rceil`); lengthscales in bins."""
    if n_bins < 1:
        raise ValueError(f"expected n_bins >= 1, got {n_bins}")
    if not min_lengthscale > 0:
        raise ValueError(f"expected min_lengthscale > 0, got {min_lengthscale}")
    N = n_circle if n_circle is not None else math.ceil(n_bins + 4 * min_lengthscale)
    if N < n_bins:
        raise ValueError(f"expected n_circle >= n_bins = {n_bins}, got {N}")
    w_max = math.floor(N / (math.pi * min_lengthscale) * math.sqrt(0.5 * math.log(condition)))
    if w_max < N / 2:
        cosines, sines = range(0, w_max), range(1, w_max + 1)
    else:
        cosines, sines = range(0, math.ceil((N + 1) / 2)), range(1, math.floor((N - 1) / 2) + 1)
    t = torch.arange(n_bins, dtype=dtype, device=device)
    w_cos = torch.tensor(list(cosines), dtype=dtype, device=device)
    w_sin = torch.tensor(list(sines), dtype=dtype, device=device)
    scale = math.sqrt(N / 2)
    cos = torch.cos(2 * math.pi * w_cos[:, None] * t / N) / scale
    sin = torch.sin(2 * math.pi * w_sin[:, None] * t / N) / scale
    # the constant and (even N) Nyquist cosines have norm sqrt(2) on the circle
    single = (w_cos == 0) | (2 * w_cos == N)
    cos = torch.where(single[:, None], cos / math.sqrt(2), cos)
    return FourierBasis(torch.cat([cos, sin]), torch.cat([w_cos, w_sin]), N)


def rbf_spectrum(
    basis: FourierBasis,
    lengthscale: torch.Tensor,  # shape: (*batch,) in bins
    floor: float = 1e-4,
) -> torch.Tensor:
    """Prior variances :math:`c_w` (*batch, F) of a unit-variance squared exponential."""
    omega = 2 * math.pi * basis.frequencies / basis.n_circle
    ell = lengthscale[..., None]
    return math.sqrt(2 * math.pi) * ell * torch.exp(-0.5 * (omega * ell) ** 2) + floor


def coefficient_kl(
    mean: torch.Tensor,  # shape: (..., F)
    std: torch.Tensor,  # shape: (..., F)
    prior_variance: torch.Tensor,  # shape: (..., F) broadcastable
) -> torch.Tensor:
    """:math:`\\mathrm{KL}(N(m, s^2) \\| N(0, c))` summed over the last axis (...,)."""
    ratio = std.square() / prior_variance
    return 0.5 * (ratio + mean.square() / prior_variance - 1 - torch.log(ratio)).sum(-1)


def time_moments(
    basis: FourierBasis,
    mean: torch.Tensor,  # shape: (..., F)
    std: torch.Tensor,  # shape: (..., F)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Marginal means and variances (..., T) of :math:`z = B^\\top \\tilde z` under a diagonal
    Gaussian on the coefficients."""
    B = basis.matrix
    return mean @ B, std.square() @ B.square()
