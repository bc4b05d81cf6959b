r"""Pure functions for the half-integer Matérn SDE of order :math:`p` (:math:`\nu = p + 1/2`).

With :math:`\lambda = \sqrt{2p+1}/\rho` the covariance is

.. math::
    k(\tau) = \sigma^2 e^{-\lambda|\tau|} \frac{p!}{(2p)!}
    \sum_{i=0}^{p} \frac{(p+i)!}{i!(p-i)!} (2\lambda|\tau|)^{p-i},

and the state :math:`x = [f, f', \dots, f^{(p)}]` (column vector, dimension :math:`p+1`) obeys
:math:`dx = Fx\,dt + L\,d\beta` with :math:`F` the companion matrix of :math:`(s+\lambda)^{p+1}`.
Because :math:`N = F + \lambda I` is nilpotent, the transition and the process noise have closed
forms that stay accurate (and Q positive definite) at small :math:`\Delta/\rho`:

.. math::
    A(\Delta) = e^{-\lambda\Delta}\sum_{k=0}^{p} \frac{\Delta^k}{k!} N^k, \qquad
    Q(\Delta) = V \Xi V^\top,\; V = [L, NL, \dots, N^pL],\;
    \Xi_{ab} = \frac{Q_c (a+b)!}{a!\,b!\,(2\lambda)^{a+b+1}} P(a+b+1, 2\lambda\Delta),

with :math:`P` the regularised lower incomplete gamma function.

References
----------
1. J. Hartikainen and S. Särkkä, "Kalman filtering and smoothing solutions to temporal Gaussian
   process regression models", MLSP 2010.
2. M. Dowling, P. Sokół and I. M. Park, "Hida-Matérn kernel", arXiv:2107.07098.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache

import torch

__all__ = [
    "matern_covariance",
    "matern_drift",
    "matern_lambda",
    "matern_process_noise",
    "matern_spectral_density",
    "matern_stationary_covariance",
    "matern_transition",
    "matern_white_noise",
]


def matern_lambda(order: int, lengthscale: torch.Tensor) -> torch.Tensor:
    r""":math:`\lambda = \sqrt{2p+1}/\rho`."""
    return math.sqrt(2 * order + 1) / lengthscale


def matern_white_noise(order: int, lam: torch.Tensor, outputscale: torch.Tensor) -> torch.Tensor:
    r"""Driving-noise density :math:`Q_c = \sigma^2\lambda^{2p+1}2^{2p+1}(p!)^2/(2p)!`."""
    const = 2 ** (2 * order + 1) * math.factorial(order) ** 2 / math.factorial(2 * order)
    return outputscale * const * lam ** (2 * order + 1)


def matern_drift(order: int, lam: torch.Tensor) -> torch.Tensor:
    """Companion matrix F of :math:`(s+\\lambda)^{p+1}`, shape (p+1, p+1)."""
    S = order + 1
    last = torch.stack([-math.comb(S, k) * lam ** (S - k) for k in range(S)])
    F = torch.diag(torch.ones(S - 1, dtype=lam.dtype, device=lam.device), 1)
    return torch.cat([F[:-1], last.reshape(1, S)], dim=0)


def _nilpotent(order: int, lam: torch.Tensor) -> torch.Tensor:
    S = order + 1
    return matern_drift(order, lam) + lam * torch.eye(S, dtype=lam.dtype, device=lam.device)


def matern_transition(order: int, lam: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """A(dt) = expm(F dt) in closed form; ``dt`` of shape (*n,) gives (*n, p+1, p+1)."""
    N = _nilpotent(order, lam)
    power = torch.eye(order + 1, dtype=lam.dtype, device=lam.device)
    dt = dt[..., None, None]
    total = torch.zeros(dt.shape[:-2] + power.shape, dtype=lam.dtype, device=lam.device)
    for k in range(order + 1):
        total = total + dt**k / math.factorial(k) * power
        power = power @ N
    return torch.exp(-lam * dt) * total


def matern_process_noise(
    order: int, lam: torch.Tensor, outputscale: torch.Tensor, dt: torch.Tensor
) -> torch.Tensor:
    """Q(dt) entrywise-accurately (no cancellation in Pinf - A Pinf A^T); shape (*n, p+1, p+1)."""
    S = order + 1
    N = _nilpotent(order, lam)
    L = torch.zeros(S, 1, dtype=lam.dtype, device=lam.device)
    L[-1, 0] = 1.0
    V = torch.cat([torch.linalg.matrix_power(N, a) @ L for a in range(S)], dim=1)
    qc = matern_white_noise(order, lam, outputscale)
    ab = torch.arange(S, dtype=lam.dtype, device=lam.device)
    n = ab[:, None] + ab[None, :]  # a + b
    fact = torch.exp(torch.lgamma(n + 1) - torch.lgamma(ab + 1)[:, None] - torch.lgamma(ab + 1))
    scale = qc * fact / (2 * lam) ** (n + 1)
    # clamp: d/dx P(1, x) at x = 0 evaluates 0 * log(0) = NaN in the backward pass
    x = (2 * lam * dt[..., None, None]).clamp_min(torch.finfo(lam.dtype).tiny)
    xi = scale * torch.special.gammainc(n + 1, x)
    return V @ xi @ V.mT


@cache
def _unit_derivatives(order: int) -> tuple[Fraction, ...]:
    # m(d) = e^{-d} P(d) at lambda = sigma = 1; the n-th derivative is e^{-d} (D - 1)^n P
    coeffs = [Fraction(0)] * (order + 1)
    for i in range(order + 1):
        coeffs[order - i] = Fraction(
            math.factorial(order) * math.factorial(order + i) * 2 ** (order - i),
            math.factorial(2 * order) * math.factorial(i) * math.factorial(order - i),
        )
    values = []
    for _ in range(2 * order + 1):
        values.append(coeffs[0])
        deriv = [k * c for k, c in enumerate(coeffs)][1:]
        deriv.append(Fraction(0))
        coeffs = [d - c for d, c in zip(deriv, coeffs, strict=True)]
    return tuple(values)


def matern_stationary_covariance(
    order: int, lam: torch.Tensor, outputscale: torch.Tensor
) -> torch.Tensor:
    r"""Pinf, :math:`P_{ij} = (-1)^j k^{(i+j)}(0^+) = \sigma^2\lambda^{i+j}(-1)^j m^{(i+j)}(0)`."""
    m = _unit_derivatives(order)
    S = order + 1
    C = torch.tensor(
        [[float((-1) ** j * m[i + j]) for j in range(S)] for i in range(S)],
        dtype=lam.dtype,
        device=lam.device,
    )
    powers = lam ** torch.arange(S, dtype=lam.dtype, device=lam.device)
    return outputscale * powers[:, None] * C * powers[None, :]


def matern_covariance(
    order: int, lengthscale: torch.Tensor, outputscale: torch.Tensor, tau: torch.Tensor
) -> torch.Tensor:
    """k(tau) for any shape of ``tau``."""
    d = matern_lambda(order, lengthscale) * tau.abs()
    poly = torch.zeros_like(d)
    for i in range(order + 1):
        c = math.factorial(order + i) / (math.factorial(i) * math.factorial(order - i))
        poly = poly + c * (2 * d) ** (order - i)
    return outputscale * math.factorial(order) / math.factorial(2 * order) * poly * torch.exp(-d)


def matern_spectral_density(
    order: int, lengthscale: torch.Tensor, outputscale: torch.Tensor, omega: torch.Tensor
) -> torch.Tensor:
    r"""Two-sided density in angular frequency, :math:`S(u) = Q_c/(\lambda^2+u^2)^{p+1}`."""
    lam = matern_lambda(order, lengthscale)
    return matern_white_noise(order, lam, outputscale) / (lam**2 + omega**2) ** (order + 1)
