"""MarkovGP with non-Gaussian likelihoods (CVI): oracle, recovery, persistence, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.errors import ValueRangeError
from workbench.inference import cvi
from workbench.kernels import MaternKernel
from workbench.likelihoods import Gaussian, Poisson


def _truth(T=600, seed=0):
    x = np.arange(T) * 0.02
    f = 0.8 + np.sin(2 * x) + 0.5 * np.sin(5 * x)
    return x, f, np.random.default_rng(seed)


def _counts(T=600, seed=0, missing=0.1):
    x, f, rng = _truth(T, seed)
    y = rng.poisson(0.5 * np.exp(f)).astype(float)
    y[rng.random(T) < missing] = np.nan
    return xr.DataArray(y, dims="time", coords={"time": x}, name="spikes"), f


def _dense_smoother(model, x):
    with torch.no_grad():
        K = model.kernel.covariance(x[:, None] - x[None, :])
    c = model.prior_mean(x).detach()

    def smoother(y, noise, mask):
        if not mask.any():
            return c.clone(), K.diagonal().clone(), torch.zeros((), dtype=y.dtype)
        L = torch.linalg.cholesky(K[mask][:, mask] + torch.diag(noise[mask]))
        r = (y - c)[mask]
        mean = c + K[:, mask] @ torch.cholesky_solve(r[:, None], L)[:, 0]
        V = torch.linalg.solve_triangular(L, K[:, mask].T, upper=False)
        return mean, K.diagonal() - V.square().sum(0), torch.zeros((), dtype=y.dtype)

    return smoother


def test_poisson_posterior_equals_dense_cvi_oracle():
    da, _ = _counts(T=200)
    model = wb.MarkovGP(
        MaternKernel(nu=2.5, lengthscale=0.7),
        likelihood=Poisson(bin_width=0.5),
        mean=0.5,
        cvi_steps=25,
        cvi_lr=0.8,
    )
    post = model.posterior(da)
    obs = wb.data.from_dataarray(da, support="count")
    oracle = cvi(
        obs.y, obs.mask, model.observation, _dense_smoother(model, obs.x), steps=25, lr=0.8
    )
    np.testing.assert_allclose(post["mean"], oracle.mean, rtol=0, atol=1e-8)
    np.testing.assert_allclose(post["variance"], oracle.var, rtol=0, atol=1e-8)


def test_poisson_fit_recovers_the_latent_and_the_elbo_increases():
    da, f = _counts()
    model = wb.MarkovGP(MaternKernel(nu=2.5, lengthscale=2.0), likelihood=Poisson(bin_width=0.5))
    model.fit(da, steps=6, progress=False)
    assert model.fit_elbo[-1] >= model.fit_elbo[0]
    assert np.all(np.diff(model.fit_elbo) > -1e-6)
    post = model.posterior(da)
    assert np.corrcoef(post["mean"], f)[0, 1] > 0.95
    inside = (post.lower.values <= f) & (f <= post.upper.values)
    assert inside.mean() > 0.85
    assert model.log_marginal_likelihood(da) == pytest.approx(model.fit_elbo[-1], rel=1e-6)
    forecast = model.posterior(da, at=np.linspace(10, 14, 9))
    assert np.isfinite(forecast["mean"]).all() and forecast.sizes["time"] == 9


def test_bernoulli_classification():
    x, f, rng = _truth(T=800)
    y = (rng.random(x.size) < 1 / (1 + np.exp(-2 * (f - 0.8)))).astype(float)
    da = xr.DataArray(y, dims="time", coords={"time": x})
    model = wb.MarkovGP(MaternKernel(nu=1.5, lengthscale=1.0), likelihood="bernoulli")
    model.fit(da, steps=4, progress=False)
    assert np.corrcoef(model.posterior(da)["mean"], f)[0, 1] > 0.8


def test_gaussian_likelihood_object_uses_the_exact_path():
    da, _ = _counts(T=100, missing=0.0)
    a = wb.MarkovGP(MaternKernel(), likelihood=Gaussian(noise=0.25))
    b = wb.MarkovGP(MaternKernel(), noise=0.25)
    assert a.observation is None and a.likelihood == "gaussian"
    assert a.log_marginal_likelihood(da) == pytest.approx(b.log_marginal_likelihood(da))


def test_save_load_poisson_model_bit_for_bit(tmp_path):
    da, _ = _counts(T=150)
    model = wb.MarkovGP(MaternKernel(lengthscale=0.5), likelihood=Poisson(link="softplus"))
    model.fit(da, steps=2, progress=False)
    model.save(tmp_path / "p.wbm")
    again = wb.load(tmp_path / "p.wbm")
    assert isinstance(again.observation, Poisson) and again.observation.link == "softplus"
    np.testing.assert_array_equal(again.posterior(da)["mean"], model.posterior(da)["mean"])


def test_bad_input_for_count_likelihoods():
    model = wb.MarkovGP(MaternKernel(), likelihood="poisson")
    negative = xr.DataArray(
        [1.0, -2.0, 3.0], dims="time", coords={"time": [0.0, 1.0, 2.0]}, name="spikes"
    )
    with pytest.raises(ValueRangeError, match="non-negative integer counts in variable 'spikes'"):
        model.fit(negative, progress=False)
    with pytest.raises(ValueRangeError, match="counts"):
        model.posterior(negative.copy(data=[1.0, 0.5, 3.0]))
    with pytest.raises(ValueError, match="whittle"):
        model.fit(negative.copy(data=[1.0, 2.0, 3.0]), method="whittle", progress=False)
    with pytest.raises(ValueError, match="observation_noise"):
        model.posterior(negative.copy(data=[1.0, 2.0, 3.0]), observation_noise=True)
    with pytest.raises(ValueError, match="MarkovGP"):
        wb.ExactGP(MaternKernel(), likelihood="poisson")
    with pytest.raises(ValueError, match="likelihood in"):
        wb.MarkovGP(MaternKernel(), likelihood="cauchy")
    with pytest.raises(ValueError, match="cvi_lr"):
        wb.MarkovGP(MaternKernel(), likelihood="poisson", cvi_lr=1.5)
