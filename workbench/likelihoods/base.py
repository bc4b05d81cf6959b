"""Likelihood base: log-density plus its Gaussian expectation and derivatives (for CVI)."""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["ExpectedLogProb", "Likelihood", "gauss_hermite"]


class ExpectedLogProb(NamedTuple):
    r""":math:`E = \mathbb E_{N(f; m, v)}[\log p(y \mid f)]` and its derivatives in m and v."""

    value: torch.Tensor
    d_mean: torch.Tensor
    d_var: torch.Tensor


@cache
def _nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite.hermgauss(n)
    return x, w / math.sqrt(math.pi)


def gauss_hermite(n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Nodes and weights with :math:`E[h(f)] \approx \sum_i w_i h(m + \sqrt{2v}\,x_i)`."""
    x, w = _nodes(n)
    return (
        torch.as_tensor(x, dtype=like.dtype, device=like.device),
        torch.as_tensor(w, dtype=like.dtype, device=like.device),
    )


class Likelihood(torch.nn.Module):
    """An observation model :math:`p(y \\mid f)` for a latent function value f.

    Subclasses define :meth:`log_prob`; :meth:`expected_log_prob` defaults to Gauss-Hermite
    quadrature whose derivatives in (m, v) are exact for the quadrature rule (autograd), and
    closed forms override it where they exist. ``support`` names the values the data edge
    accepts ("real", "count", "binary", "positive").
    """

    support = "real"
    quadrature_points = 30

    def get_config(self) -> dict:
        """JSON-able constructor arguments (parameter values travel in the state dict)."""
        return {}

    def latent_guess(self, y: torch.Tensor) -> torch.Tensor:
        """A constant latent value matching the data's average (starts the prior mean)."""
        return y.mean()

    def latent_guess_per_unit(self, means: torch.Tensor) -> torch.Tensor:
        """:meth:`latent_guess` for each entry of a vector of per-unit data means."""
        return torch.stack([self.latent_guess(m.reshape(1)) for m in means])

    def log_prob(self, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Elementwise :math:`\\log p(y \\mid f)`."""
        raise NotImplementedError

    def expected_log_prob_value(
        self, y: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
    ) -> torch.Tensor:
        """Differentiable :math:`E` alone (for M-steps on readouts and likelihood parameters)."""
        x, w = gauss_hermite(self.quadrature_points, mean)
        f = mean[..., None] + torch.sqrt(2.0 * var.clamp_min(0.0))[..., None] * x
        return (self.log_prob(y[..., None], f) * w).sum(-1)

    def expected_gradients(
        self, y: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\partial_m E, \partial_v E)` alone (CVI site updates need no value)."""
        expected = self.expected_log_prob(y, mean, var)
        return expected.d_mean, expected.d_var

    def expected_log_prob(
        self, y: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
    ) -> ExpectedLogProb:
        """E and its derivatives for each element (shapes of ``y``)."""
        with torch.enable_grad():
            m = mean.detach().requires_grad_(True)
            v = var.detach().clamp_min(0.0).requires_grad_(True)
            x, w = gauss_hermite(self.quadrature_points, m)
            f = m[..., None] + torch.sqrt(2.0 * v)[..., None] * x
            value = (self.log_prob(y[..., None], f) * w).sum(-1)
            d_mean, d_var = torch.autograd.grad(value.sum(), (m, v))
        return ExpectedLogProb(value.detach(), d_mean, d_var)
