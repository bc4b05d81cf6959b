"""ipywidgets explorers: the only part of workbench that imports ipywidgets and matplotlib."""

from __future__ import annotations

from workbench.widgets.explorer import ModelExplorer as ModelExplorer
from workbench.widgets.gpvae_explorer import GPVAEExplorer as GPVAEExplorer
from workbench.widgets.latent_explorer import LatentExplorer as LatentExplorer
from workbench.widgets.magma_explorer import MagmaExplorer as MagmaExplorer
from workbench.widgets.multitask_explorer import MultitaskExplorer as MultitaskExplorer
from workbench.widgets.sparse_explorer import SparseGPExplorer as SparseGPExplorer
from workbench.widgets.specs import control_for as control_for
from workbench.widgets.specs import css_class as css_class
from workbench.widgets.views import plot_posterior as plot_posterior
from workbench.widgets.views import posterior_png as posterior_png

__all__ = [
    "GPVAEExplorer",
    "LatentExplorer",
    "MagmaExplorer",
    "ModelExplorer",
    "MultitaskExplorer",
    "SparseGPExplorer",
    "control_for",
    "css_class",
    "plot_posterior",
    "posterior_png",
]
