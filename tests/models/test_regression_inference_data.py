"""Joint posterior draws and ArviZ export of ExactGP / MarkovGP against dense oracles."""

from __future__ import annotations

import warnings

import gpytorch
import matplotlib
import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.kernels import MaternKernel
from workbench.likelihoods import (
    Bernoulli,
    Gaussian,
    NegativeBinomial,
    Poisson,
    StudentT,
    sample_observations,
)
from workbench.models.regression_samples import posterior_draws
from workbench.testing import arviz_checks

matplotlib.use("Agg")

S = 20_000


def _series(n: int = 25, gap: bool = True, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 5, n))
    y = np.sin(2 * t) + 0.2 * rng.normal(size=n)
    if gap:
        y[8:12] = np.nan
    return xr.DataArray(y, dims="time", coords={"time": t}, name="v", attrs={"units": "mV"})


def _dense_posterior(kernel, t, y, noise, mean=0.0):
    """Joint posterior of f at every t given the finite y (plain dense algebra)."""
    x = torch.as_tensor(np.array(t))
    K = kernel(x[:, None], x[:, None]).to_dense().detach().double()
    o = torch.as_tensor(np.isfinite(y))
    A = K[o][:, o] + noise * torch.eye(int(o.sum()), dtype=torch.float64)
    cross = K[:, o]
    mu = mean + cross @ torch.linalg.solve(A, torch.as_tensor(y[np.isfinite(y)]) - mean)
    return mu.numpy(), (K - cross @ torch.linalg.solve(A, cross.mT)).numpy()


def _check_moments(draws: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> None:
    sd = np.sqrt(np.diag(cov))
    assert np.abs(draws.mean(0) - mean).max() < 4.5 * sd.max() / np.sqrt(len(draws))
    emp = np.cov(draws.T)
    scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert np.abs(emp - cov).max() < 0.05 * scale.max()  # MC error of cov ~ sqrt(2/S) var


def test_markov_matheron_draws_match_the_dense_joint_posterior():
    da = _series()
    model = wb.MarkovGP(MaternKernel(nu=1.5, lengthscale=0.7), noise=0.05)
    obs = model._observe(da, "time")
    draws = posterior_draws(model, obs, S, torch.Generator().manual_seed(1)).numpy()
    mean, cov = _dense_posterior(model.kernel, da.time.values, da.values, 0.05)
    _check_moments(draws, mean, cov)


def test_exact_gp_draws_match_the_dense_joint_posterior():
    da = _series()
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
    kernel.base_kernel.lengthscale = 0.8
    model = wb.ExactGP(kernel, noise=0.05).double()
    obs = model._observe(da, "time")
    draws = posterior_draws(model, obs, S, torch.Generator().manual_seed(2)).numpy()
    mean, cov = _dense_posterior(model.kernel, da.time.values, da.values, 0.05)
    _check_moments(draws, mean, cov)


def test_cvi_draws_have_the_variational_posterior_moments():
    rng = np.random.default_rng(3)
    t = np.arange(40.0)
    counts = rng.poisson(np.exp(np.sin(t / 5)))
    da = xr.DataArray(counts.astype(float), dims="time", coords={"time": t})
    model = wb.MarkovGP(MaternKernel(nu=1.5, lengthscale=5.0), likelihood=Poisson())
    post = model.posterior(da)
    draws = posterior_draws(model, model._observe(da, "time"), S, torch.Generator().manual_seed(4))
    draws = draws.numpy()
    sd = np.sqrt(post["variance"].values)
    assert np.abs(draws.mean(0) - post["mean"].values).max() < 4.5 * sd.max() / np.sqrt(S)
    assert np.abs(draws.var(0) / post["variance"].values - 1).max() < 0.06


def test_members_draw_with_their_own_hyperparameters():
    da = xr.concat([_series(seed=0, gap=False), _series(seed=0, gap=False) * 3], dim="unit")
    model = wb.MarkovGP(MaternKernel(nu=1.5), noise=0.05, share_hyperparameters=False)
    model.fit(da, steps=3, progress=False)
    draws = posterior_draws(model, model._observe(da, "time"), 4000, torch.Generator())
    post = model.posterior(da)
    assert draws.shape == (4000, 2, 25)
    ratio = draws.numpy().var(0) / post["variance"].values
    assert np.abs(ratio - 1).max() < 0.15


@pytest.mark.arviz
def test_inference_data_groups_dims_and_arviz_functions():
    base = _series(seed=0, gap=False)
    da = xr.concat([base, 2 * base + 0.1], dim="unit").assign_coords(unit=["a", "b"])
    model = wb.MarkovGP(MaternKernel(nu=1.5, lengthscale=0.7), noise=0.05)
    idata = model.to_inference_data(da, num_samples=200, seed=5)
    for group in ("posterior", "posterior_predictive", "observed_data", "log_likelihood"):
        assert group in arviz_checks.group_names(idata)
    assert idata.posterior["f"].dims == ("chain", "draw", "unit", "time")
    assert list(idata.posterior_predictive["v"].unit.values) == ["a", "b"]
    np.testing.assert_array_equal(idata.observed_data["v"].transpose("unit", "time"), da.values)
    assert idata.observed_data["v"].attrs["units"] == "mV"
    assert idata.posterior.attrs["model"] == "MarkovGP"
    summary = arviz_checks.summary(idata, var_names=["f"])
    assert {"r_hat", "ess_bulk"} <= set(summary.columns) and len(summary) == 50
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 1 chain / pareto-k notices
        loo = arviz_checks.loo(idata)
    assert np.isfinite(loo.elpd)
    arviz_checks.plot_ppc(idata, num_samples=20)
    again = model.to_inference_data(da, num_samples=200, seed=5)
    assert again.posterior["f"].equals(idata.posterior["f"])


@pytest.mark.arviz
def test_pointwise_log_likelihood_is_the_gaussian_density_of_each_draw():
    da = _series(gap=False)
    model = wb.ExactGP(gpytorch.kernels.RBFKernel(), noise=0.1).double()
    idata = model.to_inference_data(da, num_samples=50)
    f = idata.posterior["f"].values
    y = da.values
    expected = -0.5 * (np.log(2 * np.pi * 0.1) + (y - f) ** 2 / 0.1)
    np.testing.assert_allclose(idata.log_likelihood["v"].values, expected, rtol=1e-6)


@pytest.mark.arviz
def test_missing_values_move_to_an_obs_dim_with_their_coordinates():
    da = _series(gap=True)
    model = wb.MarkovGP(MaternKernel(nu=1.5, lengthscale=0.7), noise=0.05)
    idata = model.to_inference_data(da, num_samples=100)
    assert idata.posterior["f"].sizes["time"] == 25
    obs = idata.observed_data["v"]
    assert obs.dims == ("obs",) and obs.sizes["obs"] == 21 and np.isfinite(obs).all()
    np.testing.assert_array_equal(obs["time"].values, da.time.values[np.isfinite(da.values)])
    assert idata.log_likelihood["v"].dims == ("chain", "draw", "obs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(arviz_checks.loo(idata).elpd)


@pytest.mark.arviz
def test_poisson_model_replicates_counts():
    t = np.arange(30.0)
    da = xr.DataArray(np.random.default_rng(0).poisson(2.0, 30).astype(float), dims="time",
                      coords={"time": t}, name="spikes")  # fmt: skip
    model = wb.MarkovGP(MaternKernel(nu=1.5, lengthscale=5.0), likelihood=Poisson())
    idata = model.to_inference_data(da, num_samples=50)
    rep = idata.posterior_predictive["spikes"].values
    assert (rep >= 0).all() and np.array_equal(rep, np.round(rep))


@pytest.mark.parametrize(
    "likelihood, mean, var",
    [
        (Gaussian(noise=0.3), 0.5, 0.3),
        (Poisson(bin_width=2.0), 2 * np.exp(0.5), 2 * np.exp(0.5)),
        (Bernoulli(), 1 / (1 + np.exp(-0.5)), None),
        (NegativeBinomial(dispersion=3.0), np.exp(0.5), np.exp(0.5) + np.exp(1.0) / 3),
        (StudentT(df=5.0, scale=0.5), 0.5, 0.25 * 5 / 3),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, float | None) else "",
)
def test_sampled_observations_have_the_likelihood_moments(likelihood, mean, var):
    f = torch.full((200_000,), 0.5, dtype=torch.float64)
    y = sample_observations(likelihood.double(), f, torch.Generator().manual_seed(0)).numpy()
    var = var if var is not None else mean * (1 - mean)
    assert abs(y.mean() - mean) < 5 * np.sqrt(var / y.size)
    assert abs(y.var() / var - 1) < 0.05
    again = sample_observations(likelihood.double(), f, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(y, again.numpy())


@pytest.mark.arviz
@pytest.mark.parametrize("likelihood", ["gaussian", "poisson"])
def test_sparse_gp_inference_data_uses_the_variational_marginals(likelihood):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(150, 2))
    f = np.sin(4 * X[:, 0]) + np.cos(3 * X[:, 1])
    y = (
        10 + 3 * f + 0.3 * rng.normal(size=150)
        if likelihood == "gaussian"
        else rng.poisson(np.exp(f)).astype(float)
    )
    da = xr.DataArray(y, dims="site", name="z",
                      coords={"lon": ("site", X[:, 0]), "lat": ("site", X[:, 1])})  # fmt: skip
    model = wb.SparseInverseCholeskyGP(rho=2.0, likelihood=likelihood)
    model.fit(da, epochs=2, progress=False)
    idata = model.to_inference_data(num_samples=4000, seed=1)
    post = model.posterior()
    draws = idata.posterior["f"].values[0]
    sd = np.sqrt(post["variance"].values)
    assert np.abs(draws.mean(0) - post["mean"].values).max() < 4.5 * sd.max() / np.sqrt(4000)
    assert np.abs(draws.std(0) / sd - 1).max() < 0.1
    np.testing.assert_array_equal(idata.observed_data["z"].values, y)
    np.testing.assert_array_equal(idata.observed_data["lon"].values, X[:, 0])
    if likelihood == "gaussian":  # the density of y in data units: standardising is undone
        noise = model.hyperparameters()["likelihood.noise"] * float(model.y_scale) ** 2
        expected = -0.5 * (np.log(2 * np.pi * noise) + (y - draws) ** 2 / noise)
        np.testing.assert_allclose(idata.log_likelihood["z"].values[0], expected, rtol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(arviz_checks.loo(idata).elpd)
    arviz_checks.plot_ppc(idata, num_samples=20)
