"""Labelled outputs of the GP-VAEs: posterior Dataset and ArviZ groups."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.data.multimodal import TrialData
from workbench.io import make_attrs, samples_to_inference_data
from workbench.models.divergence import check_moments

__all__ = ["gpvae_dataset", "gpvae_inference_data", "gpvae_scores"]


def _feature_layout(model, prepared: TrialData, m: str) -> tuple[list[str], dict, list[int]]:
    """Feature dims, coords and sizes of modality m: from the data when present, else from
    the training data (or plain positions after loading)."""
    for source in (prepared, model._template):
        if source is not None and m in source.modalities:
            arr = source.modalities[m]
            dims = list(arr.feature_dims)
            return dims, arr.feature_coords, [len(arr.feature_coords[d]) for d in dims]
    spec = model.layout["features"][m]
    return (
        spec["dims"],
        {d: np.arange(s) for d, s in zip(spec["dims"], spec["sizes"], strict=True)},
        spec["sizes"],
    )


def _base_coords(model, prepared: TrialData) -> dict[str, Any]:
    return {
        model.trial_dim: prepared.trials,
        model.time_dim: prepared.time,
        "latent": model.latent_names,
        "group": ("latent", model.latent_groups),
    }


def gpvae_dataset(model, prepared: TrialData, mean: torch.Tensor, var: torch.Tensor):
    """Latent moments (trial, latent, time) plus each modality's reconstruction."""
    dims = (model.trial_dim, model.time_dim, "latent")
    data = {
        "latent_mean": (dims, mean.transpose(1, 2).cpu().numpy().astype(np.float64)),
        "latent_variance": (dims, var.transpose(1, 2).cpu().numpy().astype(np.float64)),
    }
    coords = _base_coords(model, prepared)
    with torch.no_grad():
        for m, net in model.nets.items():
            idx = model.latent_index(m)
            recon = check_moments(net.reconstruct(mean[:, idx], var[:, idx]))[0]
            recon = recon.cpu().numpy().astype(np.float64)
            fdims, fcoords, sizes = _feature_layout(model, prepared, m)
            data[f"{m}_mean"] = ((*dims[:2], *fdims), recon.reshape(*recon.shape[:2], *sizes))
            coords |= fcoords
    ds = xr.Dataset(data, coords=coords)
    ds["latent_mean"].attrs = {"long_name": "posterior mean of the latent"}
    ds["latent_variance"].attrs = {"long_name": "posterior variance of the latent"}
    for m in model.nets:
        observed = "observed" if m in prepared.modalities else "predicted across modalities"
        ds[f"{m}_mean"].attrs = {"long_name": f"expected {m} ({observed})"}
    ds.attrs = make_attrs(
        type(model).__name__, model.hyperparameters(), modalities_used=",".join(prepared.modalities)
    )
    return ds


def gpvae_inference_data(model, prepared: TrialData, mean, var, draws: int, seed: int) -> Any:
    """Draws of the latents' time marginals from q, replicated data and per-bin
    log-likelihoods."""
    gen = torch.Generator().manual_seed(seed)  # CPU draws (the same on every device), moved
    noise = torch.randn((draws, *mean.shape), generator=gen, dtype=mean.dtype)
    z = mean + var.sqrt() * noise.to(mean.device)  # (draw, trial, latent, time)
    log_lik, observed, replicated = {}, {}, {}
    dims = (model.trial_dim, model.time_dim)
    with torch.no_grad():
        for m, arr in prepared.modalities.items():
            idx = model.latent_index(m)
            net = model.nets[m]
            values = [net.log_prob(arr.values, arr.observed, z[d][:, idx]) for d in range(draws)]
            log_lik[m] = torch.stack(values)[None].cpu().numpy().astype(np.float64)
            fdims, fcoords, sizes = _feature_layout(model, prepared, m)
            coords = {model.trial_dim: prepared.trials, model.time_dim: prepared.time} | fcoords
            x = np.where(arr.observed.cpu().numpy() > 0, arr.values.cpu().numpy(), np.nan)
            observed[m] = xr.DataArray(
                x.reshape(*x.shape[:2], *sizes).astype(np.float64), dims=(*dims, *fdims),
                coords=coords,
            )  # fmt: skip
            rep = torch.stack([net.sample(z[d][:, idx], gen) for d in range(draws)])
            replicated[m] = xr.DataArray(
                rep.cpu().numpy().reshape(1, draws, *x.shape[:2], *sizes).astype(np.float64),
                dims=("chain", "draw", *dims, *fdims), coords=coords,
            )  # fmt: skip
    latent = z.transpose(2, 3)[None].cpu().numpy().astype(np.float64)  # (1, draw, trial, time, K)
    groups = {
        "posterior": {"latents": latent},
        "posterior_predictive": replicated,
        "log_likelihood": log_lik,
        "observed_data": observed,
    }
    return samples_to_inference_data(
        groups,
        dims={"latents": [*dims, "latent"], **{m: list(dims) for m in log_lik}},
        coords={
            model.trial_dim: prepared.trials,
            model.time_dim: prepared.time.values,
            "latent": model.latent_names,
        },
        attrs=make_attrs(type(model).__name__),
    )


def _error(net, arr, mean, var) -> float:
    """MSE (Gaussian) or NLL (Poisson, Bernoulli) per observed value."""
    with torch.no_grad():
        if net.kind == "gaussian":
            recon = net.reconstruct(mean, var)
            err = (recon - arr.values).square() * arr.observed
        elif net.kind == "poisson":
            err = -net.expected_log_prob(arr.values, arr.observed, mean, var)
        else:
            err = -net.log_prob(arr.values, arr.observed, mean)
    return float(err.sum() / arr.observed.sum())


def gpvae_scores(model, prepared: TrialData) -> xr.Dataset:
    """Per-modality reconstruction scores from all modalities and from the others only."""
    names = list(prepared.modalities)
    rows = {"all": [], "others": []}
    arrays = prepared.modalities
    mean, var = model._moments_of(arrays)
    for m in names:
        idx = model.latent_index(m)
        arr = prepared.modalities[m]
        rows["all"].append(_error(model.nets[m], arr, mean[:, idx], var[:, idx]))
        rest = [n for n in names if n != m]
        if rest:
            other_mean, other_var = model._moments_of({n: arrays[n] for n in rest})
            rows["others"].append(_error(model.nets[m], arr, other_mean[:, idx], other_var[:, idx]))
        else:
            rows["others"].append(np.nan)
    metric = ["mse" if model.modalities[m] == "gaussian" else "nll" for m in names]
    ds = xr.Dataset(
        {k: ("modality", v) for k, v in rows.items()},
        coords={"modality": names, "metric": ("modality", metric)},
    )
    ds["all"].attrs = {"long_name": "error with every modality encoded"}
    ds["others"].attrs = {"long_name": "error predicted from the other modalities"}
    return ds
