"""Gaussian observations, y = f + e, e ~ N(0, noise)."""

from __future__ import annotations

import math

import gpytorch
import torch

from workbench.errors import check_positive
from workbench.likelihoods.base import ExpectedLogProb, Likelihood

__all__ = ["Gaussian"]


class Gaussian(Likelihood):
    r""":math:`y \mid f \sim N(f, \sigma^2)`; the expectation has a closed form.

    .. math::
        E = -\tfrac12\log(2\pi\sigma^2) - \frac{(y-m)^2 + v}{2\sigma^2}
    """

    support = "real"

    def __init__(self, noise: float = 0.1) -> None:
        super().__init__()
        noise = check_positive("noise", noise)
        self.raw_noise = torch.nn.Parameter(torch.zeros(()))
        self.raw_noise_constraint = gpytorch.constraints.GreaterThan(1e-8)
        with torch.no_grad():
            self.raw_noise.copy_(self.raw_noise_constraint.inverse_transform(torch.tensor(noise)))

    def get_config(self) -> dict:
        return {}

    @property
    def noise(self) -> torch.Tensor:
        return self.raw_noise_constraint.transform(self.raw_noise)

    def log_prob(self, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        s2 = self.noise
        return -0.5 * (torch.log(2 * math.pi * s2) + (y - f).square() / s2)

    def expected_log_prob_value(self, y, mean, var) -> torch.Tensor:
        return self.expected_log_prob(y, mean, var).value

    def expected_log_prob(self, y, mean, var) -> ExpectedLogProb:
        s2 = self.noise
        value = -0.5 * (torch.log(2 * math.pi * s2) + ((y - mean).square() + var) / s2)
        return ExpectedLogProb(value, (y - mean) / s2, torch.full_like(mean, -0.5) / s2)
