"""Binary observations with a logit or probit link."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.likelihoods.base import Likelihood

__all__ = ["Bernoulli"]


class Bernoulli(Likelihood):
    r""":math:`y \mid f \sim \mathrm{Bernoulli}(\sigma(f))`, :math:`\sigma` logistic or
    :math:`\Phi` (probit); expectations by Gauss-Hermite quadrature."""

    support = "binary"

    def __init__(self, link: str = "logit") -> None:
        super().__init__()
        if link not in ("logit", "probit"):
            raise ValueError(f"expected link in ('logit', 'probit'), got {link!r}")
        self.link = link

    def latent_guess(self, y: torch.Tensor) -> torch.Tensor:
        p = y.mean().clamp(0.01, 0.99)
        return torch.logit(p) if self.link == "logit" else torch.special.ndtri(p)

    def get_config(self) -> dict:
        return {"link": self.link}

    def log_prob(self, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        if self.link == "logit":
            return -F.softplus(torch.where(y > 0.5, -f, f))
        return torch.special.log_ndtr(torch.where(y > 0.5, f, -f))
