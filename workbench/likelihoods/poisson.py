"""Poisson counts with an exp or softplus inverse link and a bin-width offset."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.errors import check_positive
from workbench.likelihoods.base import ExpectedLogProb, Likelihood

__all__ = ["Poisson"]


class Poisson(Likelihood):
    r""":math:`y \mid f \sim \mathrm{Poisson}(\Delta\, g(f))` with :math:`g = \exp` or softplus.

    For the exp link the expectation is closed-form,
    :math:`E = y(m + \log\Delta) - \Delta e^{m + v/2} - \log y!`; softplus uses quadrature.

    Parameters
    ----------
    link : {"exp", "softplus"}
    bin_width : float
        :math:`\Delta`, the bin width in the units the rate is expressed in (e.g. seconds).
    """

    support = "count"

    def __init__(self, link: str = "exp", bin_width: float = 1.0) -> None:
        super().__init__()
        if link not in ("exp", "softplus"):
            raise ValueError(f"expected link in ('exp', 'softplus'), got {link!r}")
        self.link, self.bin_width = link, check_positive("bin_width", bin_width)

    def get_config(self) -> dict:
        return {"link": self.link, "bin_width": self.bin_width}

    def latent_guess(self, y: torch.Tensor) -> torch.Tensor:
        rate = (y.mean() / self.bin_width).clamp_min(1e-3)
        return torch.log(rate) if self.link == "exp" else torch.log(torch.expm1(rate))

    def rate(self, f: torch.Tensor) -> torch.Tensor:
        """Expected count per bin, :math:`\\Delta g(f)`."""
        return self.bin_width * (torch.exp(f) if self.link == "exp" else F.softplus(f))

    def log_prob(self, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Poisson(self.rate(f), validate_args=False).log_prob(y)

    def expected_log_prob_value(self, y, mean, var) -> torch.Tensor:
        if self.link != "exp":
            return super().expected_log_prob_value(y, mean, var)
        return self.expected_log_prob(y, mean, var).value

    def _log_factorial(self, y: torch.Tensor) -> torch.Tensor:
        """log y! for the counts, cached for the same unmodified tensor (EM and L-BFGS loops
        evaluate it hundreds of times on constant data)."""
        cached = getattr(self, "_lgamma_cache", None)
        if cached is not None and cached[0] is y and cached[1] == y._version:
            return cached[2]
        value = torch.lgamma(y + 1)
        self._lgamma_cache = (y, y._version, value)
        return value

    def expected_gradients(self, y, mean, var) -> tuple[torch.Tensor, torch.Tensor]:
        if self.link != "exp":
            return super().expected_gradients(y, mean, var)
        # in place: these are (units x bins) arrays, and fresh allocations dominate their cost
        rate = torch.add(mean, var, alpha=0.5).exp_().mul_(self.bin_width)
        return torch.sub(y, rate), rate.mul_(-0.5)

    def expected_log_prob(self, y, mean, var) -> ExpectedLogProb:
        if self.link != "exp":
            return super().expected_log_prob(y, mean, var)
        mean_rate = self.bin_width * torch.exp(mean + 0.5 * var)
        value = (
            y * (mean + torch.log(torch.as_tensor(self.bin_width)))
            - mean_rate
            - self._log_factorial(y)
        )
        return ExpectedLogProb(value, y - mean_rate, -0.5 * mean_rate)
