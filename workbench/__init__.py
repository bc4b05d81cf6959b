"""workbench: a Jupyter-native workbench for latent Gaussian-process models.

``import workbench as wb`` gives the models, ``wb.load_dataset`` for shipped data, ``wb.load``
for saved models, and the ``wb.data``/``wb.io`` edges. ipywidgets and matplotlib are imported
only by ``workbench.widgets`` (lazily, by ``model.explore``).
"""

from __future__ import annotations

__version__ = "0.1.0"

from workbench import (
    accessor,  # noqa: F401  (registers the ``da.wb`` accessor)
    data,
    errors,
    inference,
    io,
    kernels,
    likelihoods,
    metrics,
    models,
    scale,
    simulate,
    ssm,
)
from workbench.datasets import list_datasets, load_dataset
from workbench.models import (
    GPVAE,
    ExactGP,
    LatentTrajectoryGP,
    Magma,
    MagmaClust,
    MarkovGP,
    MultimodalGPVAE,
    MultitaskGP,
    SparseInverseCholeskyGP,
    select_n_clusters,
)
from workbench.persistence import load
from workbench.scale import fit_many

__all__ = [
    "GPVAE",
    "ExactGP",
    "LatentTrajectoryGP",
    "Magma",
    "MagmaClust",
    "MarkovGP",
    "MultimodalGPVAE",
    "MultitaskGP",
    "SparseInverseCholeskyGP",
    "__version__",
    "data",
    "errors",
    "fit_many",
    "inference",
    "io",
    "kernels",
    "likelihoods",
    "list_datasets",
    "load",
    "load_dataset",
    "metrics",
    "models",
    "scale",
    "select_n_clusters",
    "simulate",
    "ssm",
]
