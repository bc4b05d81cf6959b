"""Labelled outputs of :class:`LatentTrajectoryGP`: posterior Dataset and ArviZ groups."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
import xarray as xr

from workbench.data import Observations
from workbench.io import make_attrs, samples_to_inference_data
from workbench.likelihoods import Poisson
from workbench.models.divergence import check_moments
from workbench.models.latent_estep import LatentState
from workbench.models.trials import PackedTrials

__all__ = ["LatentData", "latent_dataset", "latent_inference_data"]


class LatentData(NamedTuple):
    obs: Observations
    packed: PackedTrials
    y: torch.Tensor  # shape: (1, N, L) packed counts
    mask: torch.Tensor  # shape: (1, N, L)
    y_grid: torch.Tensor  # shape: (R, N, T) on the shared grid
    mask_grid: torch.Tensor  # shape: (R, N, T)
    dt: float | None  # bin width of a regular grid, else None


def _trial_coords(model, spikes: xr.DataArray) -> tuple[bool, np.ndarray]:
    has = model.trial_dim in spikes.dims
    return has, (spikes[model.trial_dim].values if has else np.arange(1))


def latent_dataset(model, spikes, data: LatentData, state: LatentState, elbo: float) -> xr.Dataset:
    """``latent_mean``/``latent_variance`` (trial, time, latent) and Poisson ``rate``."""
    trial, trials = _trial_coords(model, spikes)
    packed = data.packed
    mean, var = packed.unpack(state.mean), packed.unpack(state.var)
    coords = {"time": spikes["time"].values, "latent": np.arange(model.n_latents)}
    if trial:
        coords[model.trial_dim] = trials
    lead = (model.trial_dim,) if trial else ()
    pick = (lambda a: a) if trial else (lambda a: a[0])
    dims = (*lead, "time", "latent")
    ds = xr.Dataset(
        {
            "latent_mean": (dims, pick(mean.transpose(1, 2).cpu().numpy())),
            "latent_variance": (dims, pick(var.transpose(1, 2).cpu().numpy())),
        },
        coords=coords,
    )
    obs_model = model.observation
    if isinstance(obs_model, Poisson) and obs_model.link == "exp":
        with torch.no_grad():
            mu, s2 = state.eta_moments(model.C, model.d)
            rate = check_moments(torch.exp(mu + 0.5 * s2))[0]  # E[exp(eta)]: events per time
            rate = packed.unpack(rate)
        ds["rate"] = ((*lead, "time", model.unit_dim), pick(rate.transpose(1, 2).cpu().numpy()))
        ds["rate"].attrs = {
            "long_name": "posterior mean firing rate",
            "units": f"1/{spikes['time'].attrs.get('units', model.time_unit)}",
        }
        ds = ds.assign_coords({model.unit_dim: spikes[model.unit_dim].values})
    ds["latent_mean"].attrs = {"long_name": "posterior mean of the latent", "units": "1"}
    ds["latent_variance"].attrs = {"long_name": "posterior variance of the latent", "units": "1"}
    ds.attrs = make_attrs(
        type(model).__name__,
        model.hyperparameters(),
        elbo=elbo,
        n_latents=model.n_latents,
        estep=model.estep,
    )
    return ds


def latent_inference_data(
    model, spikes, data: LatentData, latents: torch.Tensor, log_likelihood: bool, seed: int
) -> Any:
    """ArviZ groups from posterior draws ``latents`` (S, R, K, T) (NaN outside trial spans)."""
    eta = torch.einsum("nk,srkt->srnt", model.C.detach(), latents) + model.d.detach()[:, None]
    g = torch.Generator().manual_seed(seed + 1)
    y = torch.where(data.mask_grid, data.y_grid, torch.nan)
    groups: dict[str, dict] = {
        "posterior": {"latent_trajectory": latents.permute(0, 1, 3, 2)[None]},
        "observed_data": {"spikes": y.permute(0, 2, 1)},
    }
    if isinstance(model.observation, Poisson):
        rate = model.observation.rate(torch.nan_to_num(eta))
        # drawn on the CPU generator, then moved: seeded draws are the same on every device
        draws = torch.poisson(rate.cpu(), generator=g).to(rate.device)
        draws = torch.where(eta.isnan(), torch.nan, draws)
        groups["posterior_predictive"] = {"spikes": draws.permute(0, 1, 3, 2)[None]}
    if log_likelihood:
        ll = model.observation.log_prob(data.y_grid, torch.nan_to_num(eta))
        ll = torch.where(data.mask_grid, ll, torch.nan)
        groups["log_likelihood"] = {"spikes": ll.permute(0, 1, 3, 2)[None]}
    _, trials = _trial_coords(model, spikes)
    coords = {
        "trial": trials,
        "time": spikes["time"].values,
        "latent": np.arange(model.n_latents),
        "unit": spikes[model.unit_dim].values,
    }
    dims = {"latent_trajectory": ["trial", "time", "latent"], "spikes": ["trial", "time", "unit"]}
    return samples_to_inference_data(
        groups, dims=dims, coords=coords, attrs=make_attrs(type(model).__name__)
    )
