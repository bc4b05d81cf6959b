"""Joint posterior draws of a MultitaskGP at its observed points, and their ArviZ groups."""

from __future__ import annotations

import math
from typing import Any

import torch
import xarray as xr

from workbench.inference.dense_gp import robust_cholesky
from workbench.inference.sgpr import sgpr_factors
from workbench.io.arviz import (
    check_num_samples,
    observed_point_coords,
    samples_to_inference_data,
)

__all__ = ["MAX_JOINT", "inference_data", "joint_posterior"]

#: Joint draws need the N x N posterior covariance of the observed points.
MAX_JOINT = 5000


def joint_posterior(model, obs, X: torch.Tensor, y: torch.Tensor):
    r"""Posterior mean (N,) and covariance (N, N) of the latent values at the observed inputs:
    exact, :math:`K - K(K + \Lambda)^{-1}K`, or from the optimal sparse q(u) (sparse path)."""
    n = X.shape[0]
    if n > MAX_JOINT:
        raise ValueError(
            f"expected at most {MAX_JOINT} observed values for joint posterior draws, got {n}; "
            "subset the data (e.g. fewer tasks or a time window)"
        )
    task = X[:, 1].long()
    resid = y - model.task_mean[task]
    noise = model.noise[task]
    K = model._k(X, X)
    if model._method(obs) == "sparse":
        Z = model._inducing(X)
        factors = sgpr_factors(model._k(Z, Z), model._k(Z, X), resid, noise)
        V = torch.linalg.solve_triangular(factors.L, model._k(Z, X), upper=False)
        W = torch.linalg.solve_triangular(factors.LB, V, upper=False)
        mean, cov = W.mT @ factors.c, K - V.mT @ V + W.mT @ W
    else:
        L = robust_cholesky(K + torch.diag(noise))
        A = torch.linalg.solve_triangular(L, K, upper=False)
        z = torch.linalg.solve_triangular(L, resid[:, None], upper=False)[:, 0]
        mean, cov = A.mT @ z, K - A.mT @ A
    return model.task_mean[task] + mean, 0.5 * (cov + cov.mT)


def inference_data(
    model, da: xr.DataArray, num_samples: int, log_likelihood: bool, seed: int
) -> Any:
    """ArviZ groups over one ``obs`` dim of observed values (``task``/``time`` along it)."""
    check_num_samples(num_samples)
    obs, X, y = model._observe(da)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mean, cov = joint_posterior(model, obs, X, y)
        vals, vecs = torch.linalg.eigh(cov)  # tolerates the rank deficiency of smooth GPs
        root = vecs * vals.clamp_min(0.0).sqrt()
        # draws on the CPU generator, then moved: the same numbers on every device
        z = torch.randn(num_samples, mean.shape[0], generator=gen, dtype=mean.dtype).to(mean)
        f = mean + z @ root.mT  # (S, N)
        var = model.noise[X[:, 1].long()]
        eps = torch.randn(f.shape, generator=gen, dtype=f.dtype).to(f)
        y_rep = f + var.sqrt() * eps
    groups: dict[str, dict[str, Any]] = {
        "posterior": {"f": f.cpu().numpy()[None]},
        "posterior_predictive": {"y": y_rep.cpu().numpy()[None]},
        "observed_data": {"y": y.cpu().numpy()},
    }
    if log_likelihood:
        ll = -0.5 * ((y - f).square() / var + var.log() + math.log(2 * math.pi))
        groups["log_likelihood"] = {"y": ll.cpu().numpy()[None]}
    coords = observed_point_coords(da, model.task_dim)
    extra = {k: v for k, v in coords.items() if k != "obs"}
    return samples_to_inference_data(
        groups,
        dims={"f": ["obs"], "y": ["obs"]},
        coords={"obs": coords["obs"]},
        group_coords=dict.fromkeys(groups, extra),
        var_attrs={"observed_data": {"y": da.attrs}},
    )
