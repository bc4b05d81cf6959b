"""Scenario simulators returning ``xr.Dataset`` s with the ground truth included."""

from __future__ import annotations

from workbench.simulate.spikes import latent_spikes as latent_spikes

__all__ = ["latent_spikes"]
