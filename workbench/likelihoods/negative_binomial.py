"""Over-dispersed counts: negative binomial with mean exp(f) and a learnable dispersion."""

from __future__ import annotations

import gpytorch
import torch

from workbench.errors import check_positive
from workbench.likelihoods.base import Likelihood

__all__ = ["NegativeBinomial"]


class NegativeBinomial(Likelihood):
    r""":math:`y \mid f \sim \mathrm{NB}(\mu = \Delta e^f, r)`, variance :math:`\mu + \mu^2/r`.

    Expectations by Gauss-Hermite quadrature (the log-density is not log-concave in f for all
    y, so CVI projects site precisions to be non-negative).
    """

    support = "count"

    def __init__(self, dispersion: float = 10.0, bin_width: float = 1.0) -> None:
        super().__init__()
        dispersion = check_positive("dispersion", dispersion)
        bin_width = check_positive("bin_width", bin_width)
        self.bin_width = float(bin_width)
        self.raw_dispersion = torch.nn.Parameter(torch.zeros(()))
        self.raw_dispersion_constraint = gpytorch.constraints.Positive()
        with torch.no_grad():
            self.raw_dispersion.copy_(
                self.raw_dispersion_constraint.inverse_transform(torch.tensor(dispersion))
            )

    def latent_guess(self, y: torch.Tensor) -> torch.Tensor:
        return torch.log((y.mean() / self.bin_width).clamp_min(1e-3))

    def get_config(self) -> dict:
        return {"bin_width": self.bin_width}

    @property
    def dispersion(self) -> torch.Tensor:
        return self.raw_dispersion_constraint.transform(self.raw_dispersion)

    def log_prob(self, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        r = self.dispersion
        log_mu = f + torch.log(torch.as_tensor(self.bin_width, dtype=f.dtype))
        log_norm = torch.logaddexp(torch.log(r), log_mu)
        return (
            torch.lgamma(y + r)
            - torch.lgamma(r)
            - torch.lgamma(y + 1)
            + r * (torch.log(r) - log_norm)
            + y * (log_mu - log_norm)
        )
