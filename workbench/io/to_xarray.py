"""Turn predictive moments (tensors) back into labelled ``xr.Dataset`` objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr
from scipy.special import ndtri

from workbench.data.observations import Observations
from workbench.errors import FitDivergedError
from workbench.io.attrs import cf_attrs

__all__ = ["predictive_to_dataset"]


def predictive_to_dataset(
    obs: Observations,
    mean: torch.Tensor,  # shape: (*batch, T_out)
    variance: torch.Tensor,  # shape: (*batch, T_out)
    *,
    coords: np.ndarray | None = None,
    ci_prob: float = 0.95,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Label Gaussian predictive moments with the input's dims, coords and attrs.

    Parameters
    ----------
    obs : Observations
        The input the moments refer to (its ``template`` supplies dims, coords and attrs).
    mean, variance : Tensor, shape (*batch, T_out)
        Marginal predictive moments; leading axes follow ``obs.batch_dims``.
    coords : ndarray of shape (T_out,), optional
        New coordinates of ``obs.dim``; ``None`` keeps the input's (then ``T_out == T``).
    ci_prob : float
        Probability of the central interval ``[lower, upper]``:
        :math:`\\mu \\pm \\Phi^{-1}((1 + p)/2)\\,\\sigma`.
    attrs : mapping, optional
        Dataset attributes (provenance, see :func:`workbench.io.make_attrs`).

    Returns
    -------
    xr.Dataset
        Variables ``mean``, ``variance``, ``lower``, ``upper`` with the input's dim order.

    Raises
    ------
    FitDivergedError
        The moments contain NaN or infinite values, or negative variances.
    """
    if not 0.0 < ci_prob < 1.0:
        raise ValueError(f"expected 0 < ci_prob < 1, got {ci_prob}")
    mean_np = mean.detach().cpu().numpy().astype(np.float64, copy=False)
    var_np = variance.detach().cpu().numpy().astype(np.float64, copy=False)
    if not (np.isfinite(mean_np).all() and np.isfinite(var_np).all()) or (var_np < 0).any():
        raise FitDivergedError(
            "expected finite predictive moments, got NaN/inf or negative variances; the fit has "
            "diverged: refit with smaller learning rate or better-scaled initial hyper-parameters"
        )
    template = _output_template(obs, coords)
    half_width = float(ndtri(0.5 + ci_prob / 2.0)) * np.sqrt(var_np)
    roles = {
        "mean": mean_np,
        "variance": var_np,
        "lower": mean_np - half_width,
        "upper": mean_np + half_width,
    }
    data_vars = {}
    for role, values in roles.items():
        var = template.copy(data=_to_template_order(values, obs, template))
        var.attrs = cf_attrs(obs.attrs, role)
        if role in ("lower", "upper"):
            var.attrs["ci_prob"] = ci_prob
        data_vars[role] = var
    ds = xr.Dataset(data_vars, attrs=dict(attrs or {}))
    ds.attrs.update(obs.axis.to_attrs())
    ds.attrs["ci_prob"] = ci_prob
    return ds


def _output_template(obs: Observations, coords: np.ndarray | None) -> xr.DataArray:
    template = obs.template.rename(None)
    if coords is None:
        return template
    # drop coordinates that live along the modelled dim; they have no values at new positions
    along = [name for name, c in template.coords.items() if obs.dim in c.dims]
    template = template.drop_vars(along).isel({obs.dim: 0}, drop=True)
    axis = list(obs.template.dims).index(obs.dim)
    out = template.expand_dims({obs.dim: coords}, axis=axis)
    if obs.dim in obs.template.coords:
        out[obs.dim].attrs = dict(obs.template[obs.dim].attrs)
    return out


def _to_template_order(values: np.ndarray, obs: Observations, template: xr.DataArray) -> np.ndarray:
    order = (*obs.batch_dims, obs.dim)
    perm = [order.index(str(d)) for d in template.dims]
    return np.transpose(values, perm)
