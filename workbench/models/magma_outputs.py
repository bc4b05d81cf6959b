"""Labelled outputs of Magma / MagmaClust predictions: per-cluster and mixture predictive."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from workbench.models.magma_predict import ClusterPrediction

__all__ = ["label", "mixture_quantile", "prediction_dataset"]


def mixture_quantile(p: torch.Tensor, weights, means, sds, iters: int = 60) -> torch.Tensor:
    """Quantiles ``p`` (shape (R,)) of the Gaussian mixture at each point, shape (R, Q):
    bisection on the mixture CDF, bracket shrunk 2^-60 (below float64 resolution here)."""
    lo = (means - 10 * sds).amin(0).expand(p.shape[0], -1)
    hi = (means + 10 * sds).amax(0).expand(p.shape[0], -1)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        cdf = (weights[:, None] * torch.special.ndtr((mid[:, None] - means) / sds)).sum(1)
        below = cdf < p[:, None]
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def label(ds: xr.Dataset, attrs: dict, time_attrs: dict | None = None) -> xr.Dataset:
    """CF-style ``long_name``/``units`` on prediction variables, from the data's attrs."""
    name, units = attrs.get("long_name", attrs.get("standard_name", "value")), attrs.get("units")
    described = {
        "mean": "predictive mean of",
        "cluster_mean": "per-cluster predictive mean of",
        "lower": "lower predictive quantile of",
        "upper": "upper predictive quantile of",
        "variance": "predictive variance of",
        "cluster_variance": "per-cluster predictive variance of",
    }
    for var, text in described.items():
        if var in ds:
            ds[var].attrs["long_name"] = f"{text} {name}"
            if units is not None:
                ds[var].attrs["units"] = f"({units})^2" if "variance" in var else units
    if "membership" in ds:
        ds["membership"].attrs = {"long_name": "posterior membership probability", "units": "1"}
    if time_attrs:
        ds["time"].attrs.update(time_attrs)
    return ds


def prediction_dataset(model, pred: ClusterPrediction, noise, coords, ci_prob: float) -> xr.Dataset:
    """Per-cluster predictions, memberships and the mixture's mean, variance and quantiles."""
    weights = pred.membership
    variance = pred.cov.diagonal(0, -2, -1) + noise
    mean = (weights[:, None] * pred.mean).sum(0)
    total = (weights[:, None] * (variance + (pred.mean - mean).square())).sum(0)
    tail = 0.5 * (1 - ci_prob)
    sds = variance.sqrt()
    probs = torch.tensor([tail, 1 - tail], dtype=sds.dtype, device=sds.device)
    lower, upper = mixture_quantile(probs, weights, pred.mean, sds)
    clusters = np.arange(model.n_clusters)
    ds = xr.Dataset(
        {
            "cluster_mean": (("cluster", "time"), pred.mean.cpu().numpy()),
            "cluster_variance": (("cluster", "time"), variance.cpu().numpy()),
            "membership": (("cluster",), weights.cpu().numpy()),
            "mean": (("time",), mean.cpu().numpy()),
            "variance": (("time",), total.cpu().numpy()),
            "lower": (("time",), lower.cpu().numpy()),
            "upper": (("time",), upper.cpu().numpy()),
        },
        coords={"cluster": clusters, "time": coords},
    )
    ds.attrs = {"model": type(model).__name__, "ci_prob": ci_prob, "hypothesis": model.hypothesis}
    return ds
