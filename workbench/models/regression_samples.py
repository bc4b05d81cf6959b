"""Exact joint posterior draws and ArviZ groups for ``ExactGP`` and ``MarkovGP``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.data import Observations
from workbench.errors import ShapeMismatchError
from workbench.inference import sites_to_observations
from workbench.io.arviz import check_num_samples, pointwise_layout, samples_to_inference_data
from workbench.io.attrs import make_attrs
from workbench.likelihoods import sample_observations
from workbench.ssm import sample_state_space_prior

__all__ = ["posterior_draws", "regression_inference_data"]


def posterior_draws(
    model: Any, obs: Observations, num_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Joint draws of the latent f at ``obs.x``, shape (num_samples, *batch, T).

    State-space models use Matheron's rule, O(T) per draw: with a prior draw
    :math:`f \\sim GP(0, k)` and :math:`\\varepsilon \\sim N(0, R)` (the noise, or the CVI
    sites' pseudo-noise), :math:`m + f + \\mu(y - m - f - \\varepsilon)` is an exact draw of
    the (site) posterior, where :math:`\\mu(\\cdot)` is the smoothed mean for those data. Dense
    models draw from the joint posterior covariance (eigendecomposition, O(T³)).
    """
    if model.members is not None:
        if obs.n_series != len(model.members):
            raise ShapeMismatchError(
                f"expected {len(model.members)} series (one per fitted member), got {obs.n_series}"
            )
        parts = [
            posterior_draws(member, obs.series(i), num_samples, generator)
            for i, member in enumerate(model.members)
        ]
        return torch.stack(parts, 1).reshape(num_samples, *obs.batch_shape, obs.x.shape[0])
    if hasattr(model, "_state_space"):
        return _matheron_draws(model, obs, num_samples, generator)
    return _dense_draws(model, obs, num_samples, generator)


def _matheron_draws(model, obs: Observations, num_samples: int, g: torch.Generator):
    x = obs.x.to(model.mean)
    y, mask, noise = obs.y.to(x), obs.mask, None
    if model.observation is not None:  # the q of CVI is the posterior of its Gaussian sites
        y, noise, mask = sites_to_observations(model._run_cvi(obs).sites)
    shape = (num_samples, *obs.batch_shape, x.shape[0])
    with torch.no_grad():
        prior = sample_state_space_prior(model.kernel, x, int(np.prod(shape[:-1])), g)
        prior = prior.reshape(shape)
        variance = (model.noise if noise is None else noise).to(x).expand(shape)
        eps = variance.sqrt() * _randn(shape, g, x)
        mean = model.prior_mean(x)
        mask = mask.expand(shape)
        residual = torch.where(mask, y - mean - prior - eps, torch.zeros_like(prior))
        ssm = model._state_space(x)
        smoothed = model._smoother(ssm, model._filter(ssm, residual, mask, variance))
        return mean + prior + smoothed.mean @ ssm[2][0]


def _dense_draws(model, obs: Observations, num_samples: int, g: torch.Generator):
    x = obs.x.to(model.mean)
    T = x.shape[0]
    draws = []
    with torch.no_grad():
        K = model._covariance(x, x)
        for i, (xo, yo) in enumerate(model._series(obs)):
            where = obs.mask.reshape(-1, T)[i]
            eye = torch.eye(xo.shape[0], dtype=x.dtype, device=x.device)
            A = K[where][:, where] + model.noise * eye
            L = torch.linalg.cholesky(A)
            cross = K[:, where]
            solved = torch.cholesky_solve(cross.mT, L)  # A^{-1} K_ox
            mean = model.prior_mean(x) + solved.mT @ (yo - model.prior_mean(xo))
            cov = K - cross @ solved
            vals, vecs = torch.linalg.eigh(0.5 * (cov + cov.mT))  # smooth GPs are near-singular
            root = vecs * vals.clamp_min(0.0).sqrt()
            z = _randn((num_samples, T), g, x)
            draws.append(mean + z @ root.mT)
    return torch.stack(draws, 1).reshape(num_samples, *obs.batch_shape, T)


def _randn(shape: tuple, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normals drawn on the generator's device and moved next to ``like``."""
    return torch.randn(shape, generator=g, dtype=like.dtype, device=g.device).to(like.device)


def regression_inference_data(
    model: Any, da: xr.DataArray, dim: str, num_samples: int, log_likelihood: bool, seed: int
) -> Any:
    """ArviZ groups with the data's own dims and coords (see ``GPRegression.to_inference_data``)."""
    check_num_samples(num_samples)
    obs = model._observe(da, dim)
    g = torch.Generator().manual_seed(seed)
    f = posterior_draws(model, obs, num_samples, g)  # (S, *batch, T)
    y = obs.y.to(f)
    with torch.no_grad():
        if model.observation is None:  # noise per series when members have their own
            noise = model._noise_per_series(obs).to(f)
            y_rep = f + noise.sqrt() * _randn(f.shape, g, f)
            point = -0.5 * (torch.log(2 * np.pi * noise) + (y - f).square() / noise)
        else:
            y_rep = sample_observations(model.observation, f, g)
            point = model.observation.log_prob(y, f)
    name = str(da.name) if da.name is not None else "y"
    dims = [*obs.batch_dims, dim]
    template = obs.template.transpose(*dims)
    observed = da.transpose(*dims)
    mask = obs.mask.cpu().numpy()
    groups: dict[str, dict[str, Any]] = {
        "posterior": {"f": f.cpu().numpy()[None]},
        "posterior_predictive": {name: y_rep.cpu().numpy()[None]},
        "observed_data": {name: observed.values},
    }
    if log_likelihood:
        groups["log_likelihood"] = {name: point.cpu().numpy()[None]}
    point_dims, coords = pointwise_layout(observed, mask)
    if not mask.all():  # per-value groups keep the observed values only
        groups = _observed_only(groups, mask)
    var_dims = {"f": dims, name: point_dims}
    attrs = make_attrs(type(model).__name__, model.hyperparameters(), draws=num_samples, seed=seed)
    grid = {d: template[d].values for d in dims}  # the latent f is on every position
    return samples_to_inference_data(
        groups,
        dims=var_dims,
        coords=grid,
        group_coords={group: coords for group in groups if group != "posterior"},
        var_attrs={
            "observed_data": {name: da.attrs},
            "posterior": {"f": {"long_name": f"latent function of {name}"}},
        },
        attrs=attrs,
    )


def _observed_only(groups: dict, mask: np.ndarray) -> dict:
    """The per-value groups at the observed values (``posterior`` keeps every position)."""
    out: dict[str, dict[str, Any]] = {}
    for group, variables in groups.items():
        if group == "posterior":
            out[group] = variables
        elif group == "observed_data":
            out[group] = {k: v[mask] for k, v in variables.items()}
        else:
            out[group] = {k: v[:, :, mask] for k, v in variables.items()}
    return out
