"""Scenario simulators returning ``xr.Dataset`` s with the ground truth included."""

from __future__ import annotations

from workbench.simulate.magma import magma_clusters as magma_clusters
from workbench.simulate.multimodal import multimodal_trials as multimodal_trials
from workbench.simulate.spikes import latent_spikes as latent_spikes

__all__ = ["latent_spikes", "magma_clusters", "multimodal_trials"]
