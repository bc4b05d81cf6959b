"""Every model's ``to_inference_data`` works with ArviZ's summary, LOO and PPC plot."""

from __future__ import annotations

import warnings

import gpytorch
import matplotlib
import numpy as np
import pytest
import xarray as xr

import workbench as wb
from workbench.likelihoods import Poisson
from workbench.testing import arviz_checks

matplotlib.use("Agg")
pytestmark = pytest.mark.arviz


def _series() -> xr.DataArray:
    t = np.linspace(0, 5, 30)
    y = np.sin(2 * t) + 0.1 * np.random.default_rng(0).normal(size=30)
    return xr.DataArray(y, dims="time", coords={"time": t}, name="v")


def _exact():
    model = wb.ExactGP(gpytorch.kernels.RBFKernel(), noise=0.05).double()
    return model.to_inference_data(_series(), num_samples=100)


def _markov():
    model = wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5), noise=0.05)
    da = _series()
    return model.fit(da, steps=2, progress=False).to_inference_data(da, num_samples=100)


def _latent():
    ds = wb.simulate.latent_spikes(n_units=4, n_latents=1, n_trials=2, n_bins=40, seed=0)
    model = wb.LatentTrajectoryGP(1, likelihood=Poisson(bin_width=0.01), cvi_steps=2)
    model.fit(ds.spikes, steps=1, progress=False)
    return model.to_inference_data(num_samples=50, log_likelihood=True)


def _magma():
    ds = wb.simulate.magma_clusters(n_tasks=6, n_points=8, n_clusters=2, seed=0)
    model = wb.MagmaClust(2, prior_mean="constant", max_iter=3).fit(ds.y, progress=False)
    return model.to_inference_data(num_samples=50, log_likelihood=True)


def _multitask():
    t = np.linspace(0, 6, 15)
    da = xr.DataArray(np.stack([np.sin(t), np.cos(t)]), dims=("task", "time"),
                      coords={"task": ["a", "b"], "time": t}, name="y")  # fmt: skip
    model = wb.MultitaskGP().fit(da, steps=2, progress=False)
    return model.to_inference_data(da, num_samples=50, log_likelihood=True)


def _sparse():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(80, 2))
    da = xr.DataArray(np.sin(4 * X[:, 0]) + 0.1 * rng.normal(size=80), dims="site", name="z",
                      coords={"lon": ("site", X[:, 0]), "lat": ("site", X[:, 1])})  # fmt: skip
    model = wb.SparseInverseCholeskyGP(rho=2.0).fit(da, epochs=1, progress=False)
    return model.to_inference_data(num_samples=100)


def _gpvae():
    ds = wb.simulate.multimodal_trials(n_trials=4, n_bins=16, n_units=6, image_size=8, seed=1)
    data = ds[["spikes", "frames"]]
    model = wb.MultimodalGPVAE({"spikes": "poisson", "frames": "gaussian"})
    model.fit(data, epochs=1, progress=False)
    return model.to_inference_data(data, draws=40)  # ArviZ 1.x PSIS needs >= 25 draws


CASES = [_exact, _markov, _latent, _magma, _multitask, _sparse, _gpvae]


@pytest.mark.parametrize("make", CASES, ids=lambda f: f.__name__.strip("_"))
def test_arviz_summary_loo_and_ppc(make):
    idata = make()
    for group in ("posterior", "posterior_predictive", "observed_data", "log_likelihood"):
        assert group in arviz_checks.group_names(idata), group
    summary = arviz_checks.summary(idata, kind="stats")
    assert len(summary) > 0 and np.isfinite(summary["mean"].astype(float)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one chain; Pareto-k notices on tiny data
        var_name = next(iter(idata["log_likelihood"].data_vars))
        loo = arviz_checks.loo(idata, var_name=var_name)
    assert np.isfinite(loo.elpd)
    shared = set(idata["posterior_predictive"].data_vars) & set(idata["observed_data"].data_vars)
    assert shared
    var = sorted(shared)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plotted = arviz_checks.plot_ppc(idata, var_names=[var], num_samples=10)
    assert plotted is not None and np.size(plotted) >= 1
    matplotlib.pyplot.close("all")
