"""Pure inference numerics over tensors."""

from __future__ import annotations

from workbench.inference.dense_gp import DenseGPPrediction as DenseGPPrediction
from workbench.inference.dense_gp import dense_gp_log_marginal as dense_gp_log_marginal
from workbench.inference.dense_gp import dense_gp_predict as dense_gp_predict
from workbench.inference.dense_gp import robust_cholesky as robust_cholesky

__all__ = ["DenseGPPrediction", "dense_gp_log_marginal", "dense_gp_predict", "robust_cholesky"]
