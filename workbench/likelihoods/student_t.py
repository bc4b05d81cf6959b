"""Heavy-tailed real observations: Student-t around the latent function."""

from __future__ import annotations

import math

import gpytorch
import torch

from workbench.errors import ValueRangeError, check_positive
from workbench.likelihoods.base import Likelihood

__all__ = ["StudentT"]


class StudentT(Likelihood):
    r""":math:`y \mid f \sim t_\nu(f, s^2)`: location f, learnable scale s and degrees of freedom
    :math:`\nu`,

    .. math::
        \log p(y \mid f) = \log\Gamma(\tfrac{\nu+1}{2}) - \log\Gamma(\tfrac{\nu}{2})
            - \tfrac12\log(\nu\pi s^2) - \tfrac{\nu+1}{2}\log\big(1 + \tfrac{(y-f)^2}{\nu s^2}\big).

    Expectations by Gauss-Hermite quadrature. Not log-concave in f: curvatures are negative in
    the tails, so Laplace and CVI updates project them to be non-negative. :math:`\nu > 2`
    (finite variance): learning it lower made inference unstable on heavy-tailed data.
    """

    def __init__(self, df: float = 4.0, scale: float = 1.0) -> None:
        super().__init__()
        if not check_positive("df", df) > 2:
            raise ValueRangeError(f"expected df > 2, got {df}")
        check_positive("scale", scale)
        positive = gpytorch.constraints.Positive()
        self.raw_df_constraint = gpytorch.constraints.GreaterThan(2.0)
        self.raw_scale_constraint = positive
        as64 = lambda v: torch.tensor(float(v), dtype=torch.float64)  # noqa: E731
        self.raw_df = torch.nn.Parameter(self.raw_df_constraint.inverse_transform(as64(df)))
        self.raw_scale = torch.nn.Parameter(positive.inverse_transform(as64(scale)))

    @property
    def df(self) -> torch.Tensor:
        return self.raw_df_constraint.transform(self.raw_df)

    @property
    def scale(self) -> torch.Tensor:
        return self.raw_scale_constraint.transform(self.raw_scale)

    def log_prob(self, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        nu, s = self.df.to(f), self.scale.to(f)
        z = (y - f) / s
        return (
            torch.lgamma(0.5 * (nu + 1))
            - torch.lgamma(0.5 * nu)
            - 0.5 * torch.log(nu * math.pi * s.square())
            - 0.5 * (nu + 1) * torch.log1p(z.square() / nu)
        )
