"""Half-integer Matérn kernels with their exact SDE form."""

from __future__ import annotations

import torch

from workbench.kernels.spec import register_kernel
from workbench.kernels.statespace import matern_sde as ms
from workbench.kernels.statespace.base import (
    SDE,
    PositiveParameter,
    StateSpaceKernel,
    register_positive,
)

__all__ = ["MaternKernel"]


@register_kernel
class MaternKernel(StateSpaceKernel):
    r"""Matérn kernel with half-integer smoothness :math:`\nu = p + 1/2` and a state of size p+1.

    .. math::
        k(\tau) = \sigma^2 e^{-\lambda|\tau|}\frac{p!}{(2p)!}\sum_{i=0}^{p}
        \frac{(p+i)!}{i!(p-i)!}(2\lambda|\tau|)^{p-i}, \qquad \lambda = \sqrt{2\nu}/\rho

    Parameters
    ----------
    nu : float
        Smoothness, one of 0.5, 1.5, 2.5, ... (state dimension :math:`\nu + 1/2`).
    lengthscale, outputscale : float
        Initial :math:`\rho` and :math:`\sigma^2` (both learnable, positive).

    Examples
    --------
    >>> import torch
    >>> k = MaternKernel(nu=1.5, lengthscale=2.0).double()
    >>> round(float(k.covariance(torch.tensor(0.0, dtype=torch.float64))), 6)
    1.0
    >>> k.state_dim
    2
    """

    lengthscale = PositiveParameter()
    outputscale = PositiveParameter()

    def __init__(self, nu: float = 1.5, lengthscale: float = 1.0, outputscale: float = 1.0) -> None:
        super().__init__()
        order = nu - 0.5
        if order < 0 or order != int(order):
            raise ValueError(f"expected a half-integer nu (0.5, 1.5, 2.5, ...), got {nu}")
        self.nu, self.order = float(nu), int(order)
        register_positive(self, "lengthscale", lengthscale)
        register_positive(self, "outputscale", outputscale)

    def get_config(self) -> dict:
        return {"nu": self.nu}

    def _lam(self) -> torch.Tensor:
        return ms.matern_lambda(self.order, self.lengthscale)

    def covariance(self, tau: torch.Tensor) -> torch.Tensor:
        return ms.matern_covariance(self.order, self.lengthscale, self.outputscale, tau)

    def spectral_density(self, omega: torch.Tensor) -> torch.Tensor:
        return ms.matern_spectral_density(self.order, self.lengthscale, self.outputscale, omega)

    def sde(self) -> SDE:
        p, lam, s2 = self.order, self._lam(), self.outputscale
        S = p + 1
        L = torch.zeros(S, 1, dtype=lam.dtype, device=lam.device)
        L[-1, 0] = 1.0
        H = torch.zeros(1, S, dtype=lam.dtype, device=lam.device)
        H[0, 0] = 1.0
        return SDE(
            F=ms.matern_drift(p, lam),
            L=L,
            Qc=ms.matern_white_noise(p, lam, s2).reshape(1, 1),
            H=H,
            Pinf=ms.matern_stationary_covariance(p, lam, s2),
        )

    def discretize(self, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam = self._lam()
        A = ms.matern_transition(self.order, lam, dt)
        Q = ms.matern_process_noise(self.order, lam, self.outputscale, dt)
        return A, Q
