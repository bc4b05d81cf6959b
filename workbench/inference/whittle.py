r"""Debiased Whittle likelihood for stationary series on regular grids, O(T log T).

For a series :math:`y_0, \dots, y_{T-1}` sampled every :math:`\Delta`, the periodogram at the
Fourier frequencies :math:`\omega_k = 2\pi k/(T\Delta)` is
:math:`I_k = \frac{\Delta}{T}\,\bigl|\sum_t y_t e^{-i\omega_k t\Delta}\bigr|^2`, and the
(debiased) Whittle log-likelihood is

.. math::
    \ell(\theta) = -\sum_{k=1}^{\lfloor T/2 \rfloor}
        \Bigl[\log \bar I_k(\theta) + \frac{I_k}{\bar I_k(\theta)}\Bigr],
    \qquad
    \bar I_k(\theta) = \Delta\Bigl[2\,\mathrm{Re}\sum_{\tau=0}^{T-1}
        \bigl(1 - \tfrac{\tau}{T}\bigr) c_\theta(\tau\Delta)\,e^{-2\pi i k\tau/T}
        - c_\theta(0)\Bigr].

:math:`\bar I_k = E[I_k]` is the expected periodogram of the sampled process, so aliasing and
leakage (the biases of the plain Whittle likelihood with :math:`S(\omega_k)`) are accounted for
exactly. :math:`c_\theta` is the autocovariance of the observations (kernel plus noise at lag 0);
:math:`k = 0` (the mean) is dropped.

References
----------
1. A. M. Sykulski, S. C. Olhede, A. P. Guillaumin, J. M. Lilly and J. J. Early, "The debiased
   Whittle likelihood", Biometrika 106(2), 2019.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["expected_periodogram", "is_regular_grid", "periodogram", "whittle_log_likelihood"]


def is_regular_grid(x: np.ndarray | torch.Tensor, rtol: float = 1e-6) -> bool:
    """True when ``x`` (shape (T,), T >= 2) has equal steps up to ``rtol``."""
    if isinstance(x, torch.Tensor):  # on any device
        x = x.detach().cpu()
    steps = np.diff(np.asarray(x, dtype=np.float64))
    return steps.size > 0 and bool(np.all(np.abs(steps - steps[0]) <= rtol * abs(steps[0])))


def periodogram(y: torch.Tensor, dt: float) -> torch.Tensor:
    """:math:`I_k` for k = 1..⌊T/2⌋ of series ``y`` (shape (*batch, T)); shape (*batch, ⌊T/2⌋)."""
    T = y.shape[-1]
    spectrum = torch.fft.rfft(y, dim=-1)[..., 1 : T // 2 + 1]
    return (dt / T) * spectrum.abs().square()


def expected_periodogram(covariance: torch.Tensor, dt: float) -> torch.Tensor:
    """:math:`\\bar I_k` for k = 1..⌊T/2⌋ from autocovariances at lags 0..T-1 (shape (T,))."""
    T = covariance.shape[-1]
    taper = 1.0 - torch.arange(T, dtype=covariance.dtype, device=covariance.device) / T
    spectrum = torch.fft.rfft(taper * covariance, dim=-1)[..., 1 : T // 2 + 1]
    return dt * (2.0 * spectrum.real - covariance[..., :1])


def whittle_log_likelihood(
    power: torch.Tensor,  # shape: (*batch, K) periodograms I_k
    expected: torch.Tensor,  # shape: (K,) expected periodogram of the model
) -> torch.Tensor:
    """Whittle log-likelihood (up to a constant) of each series, shape (*batch,)."""
    expected = expected.clamp_min(torch.finfo(expected.dtype).tiny)
    return -(expected.log() + power / expected).sum(-1)
