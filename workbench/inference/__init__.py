"""Pure inference numerics over tensors."""

from __future__ import annotations

from workbench.inference.cvi import CVIResult as CVIResult
from workbench.inference.cvi import Sites as Sites
from workbench.inference.cvi import cvi as cvi
from workbench.inference.cvi import cvi_elbo as cvi_elbo
from workbench.inference.cvi import cvi_site_update as cvi_site_update
from workbench.inference.cvi import site_kl as site_kl
from workbench.inference.cvi import sites_to_observations as sites_to_observations
from workbench.inference.dense_gp import DenseGPPrediction as DenseGPPrediction
from workbench.inference.dense_gp import dense_gp_log_marginal as dense_gp_log_marginal
from workbench.inference.dense_gp import dense_gp_predict as dense_gp_predict
from workbench.inference.dense_gp import robust_cholesky as robust_cholesky
from workbench.inference.whittle import expected_periodogram as expected_periodogram
from workbench.inference.whittle import is_regular_grid as is_regular_grid
from workbench.inference.whittle import periodogram as periodogram
from workbench.inference.whittle import whittle_log_likelihood as whittle_log_likelihood

__all__ = [
    "CVIResult",
    "DenseGPPrediction",
    "Sites",
    "cvi",
    "cvi_elbo",
    "cvi_site_update",
    "dense_gp_log_marginal",
    "dense_gp_predict",
    "expected_periodogram",
    "is_regular_grid",
    "periodogram",
    "robust_cholesky",
    "site_kl",
    "sites_to_observations",
    "whittle_log_likelihood",
]
