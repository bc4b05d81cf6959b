"""The single-modality GP-VAE."""

from __future__ import annotations

from typing import Any

from workbench.models.gpvae import MultimodalGPVAE

__all__ = ["GPVAE"]


class GPVAE(MultimodalGPVAE):
    """Single-modality GP-VAE: ``n_latents`` GP latents behind one modality ``name``."""

    def __init__(
        self,
        name: str = "frames",
        likelihood: str = "gaussian",
        *,
        n_latents: int = 2,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("modalities", None)
        kwargs.pop("n_shared", None)
        kwargs.pop("n_specific", None)
        layout = kwargs.pop("layout", None)  # built below: the latent names need self.name
        super().__init__({name: likelihood}, n_shared=n_latents, n_specific=0, **kwargs)
        self.name, self.likelihood_name, self.n_latents = name, likelihood, n_latents
        if layout is not None:
            self._build(layout)

    @property
    def latent_names(self) -> list[str]:
        return [f"latent_{i}" for i in range(self.n_shared)]

    @property
    def latent_groups(self) -> list[str]:
        return [self.name] * self.n_shared

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for key in ("modalities", "n_shared", "n_specific"):
            config.pop(key)
        return {
            "name": self.name,
            "likelihood": self.likelihood_name,
            "n_latents": self.n_latents,
            **config,
        }
