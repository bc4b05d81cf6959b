"""The GP-VAEs' hyper-parameters as explorers see them: one lengthscale per latent (in time
units) and the noise variance of each Gaussian modality; the networks' weights are not listed."""

from __future__ import annotations

import torch

from workbench.errors import check_positive
from workbench.models.base import ParameterSpec

__all__ = ["GPVAEHyperparameters", "check_settings"]


def check_settings(lengthscale: float | None, weights: dict | None, modalities: dict) -> dict:
    """The modalities' likelihood weights (default 1), once the initial ``lengthscale`` (None:
    chosen at fit time) is finite and > 0 and every weight finite and >= 0."""
    if lengthscale is not None:
        check_positive("lengthscale", lengthscale)
    given = weights or {}
    return {m: check_positive(f"weight of {m!r}", given.get(m, 1.0), allow_zero=True)
            for m in modalities}  # fmt: skip


class GPVAEHyperparameters:
    """Mixin for :class:`~workbench.models.MultimodalGPVAE` (needs ``layout``, ``nets``,
    ``latent_names``, ``raw_lengthscale`` and its constraint)."""

    def _lengthscale_bounds(self) -> tuple[float, float]:
        constraint, dt = self.raw_lengthscale_constraint, self.layout["bin_width"]
        return float(constraint.lower_bound) * dt, float(constraint.upper_bound) * dt

    def hyperparameters(self) -> dict[str, float | list]:
        """``lengthscale.<latent>`` in time units and ``nets.<modality>.noise``."""
        if self.layout is None:
            return {}
        out: dict[str, float | list] = {}
        with torch.no_grad():
            ell = (self.lengthscale_bins * self.layout["bin_width"]).tolist()
            out |= {f"lengthscale.{n}": v for n, v in zip(self.latent_names, ell, strict=True)}
            for m, net in self.nets.items():
                if self.modalities[m] == "gaussian":
                    out[f"nets.{m}.noise"] = float(net.noise)
        return out

    def parameter_specs(self) -> list[ParameterSpec]:
        """Log sliders: lengthscales over their learnable range, noises ×/÷ 100."""
        if self.layout is None:
            return []
        low, high = self._lengthscale_bounds()
        specs = [
            ParameterSpec(f"lengthscale.{n}", low * 1.001, high * 0.999, True, f"lengthscale {n}")
            for n in self.latent_names
        ]
        for name, value in self.hyperparameters().items():
            if name.startswith("nets."):
                specs.append(
                    ParameterSpec(name, value / 100, value * 100, True, name.removeprefix("nets."))
                )
        return specs

    def set_hyperparameter(self, name: str, value: float) -> None:
        """Set ``lengthscale.<latent>`` (time units, clipped into its range) or a noise."""
        if not name.startswith("lengthscale."):
            super().set_hyperparameter(name, value)
            return
        latent = name.removeprefix("lengthscale.")
        if latent not in self.latent_names:
            raise KeyError(f"expected one of {sorted(self.hyperparameters())}, got {name!r}")
        value = check_positive(name, value)
        low, high = self._lengthscale_bounds()
        bins = min(max(value, low * 1.0001), high * 0.9999) / self.layout["bin_width"]
        raw = self.raw_lengthscale_constraint.inverse_transform(torch.tensor(bins))
        with torch.no_grad():
            self.raw_lengthscale[self.latent_names.index(latent)] = raw
