"""Hida-Matérn kernels: half-integer Matérn times a cosine, as a 2(p+1)-dimensional SDE."""

from __future__ import annotations

import math

import torch

from workbench.errors import ValueRangeError
from workbench.kernels.spec import register_kernel
from workbench.kernels.statespace import matern_sde as ms
from workbench.kernels.statespace.base import (
    SDE,
    PositiveParameter,
    StateSpaceKernel,
    register_positive,
)

__all__ = ["HidaMaternKernel"]


def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kronecker product of the last two dims, batched over leading dims."""
    out = a[..., :, None, :, None] * b[..., None, :, None, :]
    return out.reshape(*out.shape[:-4], a.shape[-2] * b.shape[-2], a.shape[-1] * b.shape[-1])


@register_kernel
class HidaMaternKernel(StateSpaceKernel):
    r"""Hida-Matérn kernel :math:`k(\tau) = \sigma^2 M_p(|\tau|;\rho)\cos(\omega\tau)`.

    The state is the Matérn state :math:`[f, f', \dots, f^{(p)}]` tensored with a noise-free
    rotation at angular frequency :math:`\omega` (dimension 2(p+1)):

    .. math::
        F = F_M \otimes I_2 + I_{p+1} \otimes \begin{bmatrix}0 & -\omega\\ \omega & 0\end{bmatrix},
        \quad A(\Delta) = A_M(\Delta) \otimes R(\omega\Delta),
        \quad Q(\Delta) = Q_M(\Delta)\otimes I_2

    Sums of Hida-Matérn terms give quasi-periodic and spectral-mixture-like priors that stay
    Markov. With :math:`\omega = 0` the covariance is the Matérn-(p+1/2) kernel.

    Parameters
    ----------
    order : int
        Matérn order p (smoothness p + 1/2), 0 to 6.
    lengthscale, outputscale : float
        Initial :math:`\rho`, :math:`\sigma^2` (positive, learnable).
    frequency : float
        Initial angular frequency :math:`\omega` in radians per unit of the input (learnable;
        a period :math:`T_0` corresponds to :math:`\omega = 2\pi/T_0`). Any finite real
        value is valid and unconstrained: :math:`\cos(\omega\tau)` is a positive-definite
        function for every :math:`\omega`, and the kernel depends on :math:`|\omega|` only.

    References
    ----------
    1. M. Dowling, P. Sokół and I. M. Park, "Hida-Matérn kernel", arXiv:2107.07098.
    """

    lengthscale = PositiveParameter()
    outputscale = PositiveParameter()

    def __init__(
        self,
        order: int = 1,
        lengthscale: float = 1.0,
        frequency: float = 0.0,
        outputscale: float = 1.0,
    ) -> None:
        super().__init__()
        if int(order) != order or not 0 <= order <= 6:
            raise ValueError(f"expected an integer order in 0..6, got {order}")
        self.order = int(order)
        register_positive(self, "lengthscale", lengthscale)
        register_positive(self, "outputscale", outputscale)
        raw = torch.nn.Parameter(torch.tensor(_finite(frequency)))
        self.register_parameter("raw_frequency", raw)

    @property
    def frequency(self) -> torch.Tensor:
        return self.raw_frequency

    @frequency.setter
    def frequency(self, value: float) -> None:
        with torch.no_grad():
            self.raw_frequency.copy_(torch.as_tensor(_finite(value)))

    def get_config(self) -> dict:
        return {"order": self.order}

    def _lam(self) -> torch.Tensor:
        return ms.matern_lambda(self.order, self.lengthscale)

    def covariance(self, tau: torch.Tensor) -> torch.Tensor:
        matern = ms.matern_covariance(self.order, self.lengthscale, self.outputscale, tau)
        return matern * torch.cos(self.frequency * tau)

    def spectral_density(self, omega: torch.Tensor) -> torch.Tensor:
        def lobe(u: torch.Tensor) -> torch.Tensor:
            return ms.matern_spectral_density(self.order, self.lengthscale, self.outputscale, u)

        return 0.5 * (lobe(omega - self.frequency) + lobe(omega + self.frequency))

    def sde(self) -> SDE:
        p, lam, s2, w = self.order, self._lam(), self.outputscale, self.frequency
        S = p + 1
        eye2 = torch.eye(2, dtype=lam.dtype, device=lam.device)
        W = torch.stack([torch.stack([0 * w, -w]), torch.stack([w, 0 * w])])
        L = torch.zeros(S, 1, dtype=lam.dtype, device=lam.device)
        L[-1, 0] = 1.0
        H = torch.zeros(1, S, dtype=lam.dtype, device=lam.device)
        H[0, 0] = 1.0
        F = _kron(ms.matern_drift(p, lam), eye2) + _kron(
            torch.eye(S, dtype=lam.dtype, device=lam.device), W
        )
        return SDE(
            F=F,
            L=_kron(L, eye2),
            Qc=ms.matern_white_noise(p, lam, s2) * eye2,
            H=_kron(H, eye2[:1]),
            Pinf=_kron(ms.matern_stationary_covariance(p, lam, s2), eye2),
        )

    def discretize(self, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam = self._lam()
        theta = self.frequency * dt
        c, s = torch.cos(theta), torch.sin(theta)
        R = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        eye2 = torch.eye(2, dtype=lam.dtype, device=lam.device)
        A = _kron(ms.matern_transition(self.order, lam, dt), R)
        Q = _kron(ms.matern_process_noise(self.order, lam, self.outputscale, dt), eye2)
        return A, Q


def _finite(frequency: float) -> float:
    value = float(frequency)
    if not math.isfinite(value):
        raise ValueRangeError(f"expected a finite frequency, got {frequency!r}")
    return value
