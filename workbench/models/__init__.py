"""Models: ``nn.Module`` s that own parameters and call the pure numerics."""

from __future__ import annotations

from workbench.models.base import Model as Model
from workbench.models.base import ParameterSpec as ParameterSpec
from workbench.models.base import Posterior as Posterior
from workbench.models.exact_gp import ExactGP as ExactGP
from workbench.models.gp_regression import GPRegression as GPRegression
from workbench.models.gpvae import MultimodalGPVAE as MultimodalGPVAE
from workbench.models.gpvae_single import GPVAE as GPVAE
from workbench.models.latent_trajectory import LatentTrajectoryGP as LatentTrajectoryGP
from workbench.models.magma import Magma as Magma
from workbench.models.magma import MagmaClust as MagmaClust
from workbench.models.magma_select import select_n_clusters as select_n_clusters
from workbench.models.markov_gp import MarkovGP as MarkovGP
from workbench.models.multitask import MultitaskGP as MultitaskGP
from workbench.models.sic_gp import SparseInverseCholeskyGP as SparseInverseCholeskyGP

__all__ = [
    "GPVAE",
    "ExactGP",
    "GPRegression",
    "LatentTrajectoryGP",
    "Magma",
    "MagmaClust",
    "MarkovGP",
    "Model",
    "MultimodalGPVAE",
    "MultitaskGP",
    "ParameterSpec",
    "Posterior",
    "SparseInverseCholeskyGP",
    "select_n_clusters",
]
