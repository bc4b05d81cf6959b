"""Tiny fixed-seed models and data, one :class:`Case` per public model class, shared by the
device tests (``test_device_every_model.py`` on CPU/CUDA, ``test_virtual_cuda.py`` on the
emulated device)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gpytorch
import numpy as np
import torch
import xarray as xr

import workbench as wb
from workbench.likelihoods import Poisson

__all__ = ["CASES", "Case", "Outputs"]

Outputs = dict[str, Any]  # name -> xr.Dataset | xr.DataArray | float


# -- tiny data (fixed seeds) ---------------------------------------------------------------------
def _series() -> xr.DataArray:
    rng = np.random.default_rng(0)
    t = np.arange(24, dtype=np.float64)
    y = np.sin(2 * np.pi * t / 8.0) + 0.1 * rng.standard_normal(24)
    y[[3, 11, 12]] = np.nan
    return xr.DataArray(y, dims="time", coords={"time": t}, name="y", attrs={"units": "m"})


def _counts() -> xr.DataArray:
    rng = np.random.default_rng(1)
    t = np.arange(40, dtype=np.float64)
    y = rng.poisson(3.0 * np.exp(np.sin(2 * np.pi * t / 16.0))).astype(np.float64)
    y[[5, 6]] = np.nan
    return xr.DataArray(y, dims="time", coords={"time": t}, name="counts")


def _tasks(M: int = 3, P: int = 8) -> xr.DataArray:
    rng = np.random.default_rng(2)
    t = np.linspace(0.0, 6.0, P)
    offsets = np.where(np.arange(M) % 2 == 0, 0.0, 3.0)
    y = offsets[:, None] + np.sin(t)[None] + 0.1 * rng.standard_normal((M, P))
    y[1, P - 2 :] = np.nan  # ragged: exact inference, not the complete-grid Kronecker path
    names = [f"t{i}" for i in range(M)]
    return xr.DataArray(y, dims=("task", "time"), coords={"task": names, "time": t}, name="y")


def _new_task() -> xr.DataArray:
    t = np.linspace(0.0, 3.0, 4)
    return xr.DataArray(3.0 + np.sin(t), dims="time", coords={"time": t}, name="y")


def _points() -> xr.DataArray:
    rng = np.random.default_rng(3)
    X = rng.uniform(size=(60, 2))
    z = np.sin(4 * X[:, 0]) + X[:, 1] + 0.1 * rng.standard_normal(60)
    coords = {"lon": ("site", X[:, 0]), "lat": ("site", X[:, 1])}
    return xr.DataArray(z, dims="site", coords=coords, name="z", attrs={"units": "mm"})


def _spikes() -> xr.DataArray:
    ds = wb.simulate.latent_spikes(n_units=4, n_latents=1, n_trials=2, n_bins=30, seed=0)
    return ds.spikes


def _trials() -> xr.Dataset:
    ds = wb.simulate.multimodal_trials(n_trials=4, n_bins=12, n_units=5, image_size=4, seed=1)
    return ds[["spikes", "frames"]]


AT = np.linspace(-2.0, 30.0, 9)  # new positions, inside and outside the data
AT_TASKS = np.linspace(-1.0, 7.0, 5)
AT_POINTS = np.array([[0.1, 0.2], [0.5, 0.5], [0.9, 0.3]])


# -- the cases -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """How to build, fit and read one model; the same model and data on every call."""

    make: Callable[[], torch.nn.Module]  # the unfitted model (same initial state every call)
    data: Callable[[], Any]
    fit: Callable[[Any, Any], Any]  # fit(model, data) -> model
    outputs: Callable[[Any, Any], Outputs]  # deterministic outputs
    idata: Callable[[Any, Any], Any]  # seeded ArviZ groups
    rtol: float = 1e-6  # fitted on the device vs fitted on the CPU
    atol: float = 1e-8
    moved_rtol: float = 1e-8  # the CPU-fitted model moved vs itself on the CPU
    moved_atol: float = 1e-10
    #: False where the fit draws from the device's own RNG stream (see the module docstring)
    deterministic_fit: bool = True
    #: Tensors a fit creates outside parameters and buffers that the model computes with later
    #: (variational state); they must live on the model's device too.
    fit_tensors: Callable[[Any], dict[str, torch.Tensor]] = field(default=lambda model: {})


def _regression_outputs(model, da: xr.DataArray) -> Outputs:
    return {
        "posterior": model.posterior(da),
        "posterior_at": model.posterior(da, at=AT, observation_noise=model.observation is None),
        "log_marginal_likelihood": model.log_marginal_likelihood(da),
    }


def _regression_idata(model, da):
    return model.to_inference_data(da, num_samples=6, seed=3)


def _latent_outputs(model, spikes) -> Outputs:
    return {"posterior": model.posterior(), "posterior_new": model.posterior(spikes)}


def _latent_fit_tensors(model) -> dict[str, torch.Tensor]:
    state = model._data[1]
    return {f"_data.q.{k}": v for k, v in state._asdict().items() if torch.is_tensor(v)}


def _multitask_outputs(model, da) -> Outputs:
    return {
        "posterior": model.posterior(da),
        "posterior_at": model.posterior(da, at=AT_TASKS, observation_noise=True),
        "task_covariance": model.task_covariance(),
        "log_marginal_likelihood": model.log_marginal_likelihood(da),
    }


def _magma_outputs(model, da) -> Outputs:
    return {
        "predict": model.predict(_new_task(), at=np.linspace(0.0, 8.0, 5)),
        "mean_processes": model.mean_processes(),
        "memberships": model.memberships(),
        "elbo": model.elbo(),
    }


def _magma_idata(model, da):
    return model.to_inference_data(num_samples=6, log_likelihood=True, seed=3)


def _magma_fit_tensors(model) -> dict[str, torch.Tensor]:
    return {"_fitted.tau": model._fitted[1]}


def _sparse_fit(model, da):
    return model.fit(da, epochs=1, variational_epochs=1, batch_size=32, progress=False)


def _sparse_outputs(model, da) -> Outputs:
    return {
        "posterior": model.posterior(),
        "posterior_at": model.posterior(at=AT_POINTS),
        "elbo": model.elbo(),
    }


def _sparse_fit_tensors(model) -> dict[str, torch.Tensor]:
    data = model.data
    return {"nu": model.nu, "raw_v": model.raw_v, "data.X": data.X, "data.y": data.y,
            "data.index": data.index, "data.ancestors": data.ancestors}  # fmt: skip


def _gpvae_fit(model, data):
    return model.fit(data, epochs=1, batch_size=2, progress=False)


def _gpvae_outputs(model, data) -> Outputs:
    out = {"posterior": model.posterior(data), "score": model.score(data)}
    if len(data.data_vars) > 1:  # the other modalities predicted from the spikes alone
        out["posterior_from_spikes"] = model.posterior(data[["spikes"]])
    if model.modalities.get("frames") is None:  # one seeded draw of a decoder: RNG-free here
        out["elbo"] = model.elbo(data, seed=3)
    return out


def _gpvae_idata(model, data):
    return model.to_inference_data(data, draws=4, seed=3)


def _seeded(make: Callable[[], Any]) -> Callable[[], Any]:
    """``make`` under a fixed global seed (no builder should need it; this guards the cache of
    fitted models below against test order)."""

    def build() -> Any:
        torch.manual_seed(0)
        return make()

    return build


CASES: dict[str, Case] = {
    "ExactGP": Case(
        make=_seeded(
            lambda: wb.ExactGP(
                gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel()), noise=0.05
            ).double()
        ),
        data=_series,
        fit=lambda m, da: m.fit(da, steps=3, progress=False),
        outputs=_regression_outputs,
        idata=_regression_idata,
    ),
    "MarkovGP": Case(
        make=_seeded(
            lambda: wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5), noise=0.05, trend="linear")
        ),
        data=_series,
        fit=lambda m, da: m.fit(da, steps=3, progress=False),
        outputs=_regression_outputs,
        idata=_regression_idata,
    ),
    "MarkovGP_poisson": Case(
        make=_seeded(
            lambda: wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5), likelihood=Poisson(), cvi_steps=3)
        ),
        data=_counts,
        fit=lambda m, da: m.fit(da, steps=2, progress=False),
        outputs=_regression_outputs,
        idata=_regression_idata,
    ),
    "LatentTrajectoryGP": Case(
        make=_seeded(
            lambda: wb.LatentTrajectoryGP(1, likelihood=Poisson(bin_width=0.01), cvi_steps=2)
        ),
        data=_spikes,
        fit=lambda m, spikes: m.fit(spikes, steps=1, progress=False),
        outputs=_latent_outputs,
        idata=lambda m, s: m.to_inference_data(num_samples=6, log_likelihood=True, seed=3),
        fit_tensors=_latent_fit_tensors,
    ),
    "MultitaskGP_exact": Case(
        make=_seeded(lambda: wb.MultitaskGP(n_latents=2, rank=1, inference="exact", seed=4)),
        data=_tasks,
        fit=lambda m, da: m.fit(da, steps=2, progress=False),
        outputs=_multitask_outputs,
        idata=lambda m, da: m.to_inference_data(da, num_samples=6, log_likelihood=True, seed=3),
    ),
    "MultitaskGP_sparse": Case(
        make=_seeded(lambda: wb.MultitaskGP(inference="sparse", n_inducing=5, seed=4)),
        data=_tasks,
        fit=lambda m, da: m.fit(da, steps=2, progress=False),
        outputs=_multitask_outputs,
        idata=lambda m, da: m.to_inference_data(da, num_samples=6, log_likelihood=True, seed=3),
    ),
    "Magma": Case(
        make=_seeded(lambda: wb.Magma(max_iter=2, prior_mean="constant")),
        data=lambda: _tasks(M=5, P=10),
        fit=lambda m, da: m.fit(da, progress=False),
        outputs=_magma_outputs,
        idata=_magma_idata,
        moved_rtol=1e-6,  # jitter of 1e-8 relative: condition numbers up to ~1e8
        moved_atol=1e-8,
        fit_tensors=_magma_fit_tensors,
    ),
    "MagmaClust": Case(
        make=_seeded(lambda: wb.MagmaClust(2, hypothesis="Hki", max_iter=3)),
        data=lambda: _tasks(M=6, P=10),
        fit=lambda m, da: m.fit(da, progress=False),
        outputs=_magma_outputs,  # Hki: predict fits the new task's own kernel too
        idata=_magma_idata,
        moved_rtol=1e-6,
        moved_atol=1e-8,
        fit_tensors=_magma_fit_tensors,
    ),
    "SparseInverseCholeskyGP": Case(
        make=_seeded(lambda: wb.SparseInverseCholeskyGP(rho=2.0, n_neighbors=10)),
        data=_points,
        fit=_sparse_fit,
        outputs=_sparse_outputs,
        idata=lambda m, da: m.to_inference_data(num_samples=6, seed=3),
        fit_tensors=_sparse_fit_tensors,
    ),
    "GPVAE": Case(
        make=_seeded(lambda: wb.GPVAE("spikes", "poisson", n_latents=1, seed=2)),
        data=lambda: _trials()[["spikes"]],
        fit=_gpvae_fit,
        outputs=_gpvae_outputs,
        idata=_gpvae_idata,
        rtol=5e-3,  # float32 and Adam (see the module docstring)
        atol=5e-3,
        moved_rtol=1e-4,  # float32, TF32 off
        moved_atol=1e-5,
    ),
    "MultimodalGPVAE": Case(
        make=_seeded(
            lambda: wb.MultimodalGPVAE({"spikes": "poisson", "frames": "gaussian"}, seed=3)
        ),
        data=_trials,
        fit=_gpvae_fit,
        outputs=_gpvae_outputs,
        idata=_gpvae_idata,
        rtol=5e-3,
        atol=5e-3,
        moved_rtol=1e-4,
        moved_atol=1e-5,
        deterministic_fit=False,  # the frames decoder's reparameterised sample (device RNG)
    ),
}
