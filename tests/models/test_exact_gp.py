"""ExactGP against GPyTorch's exact GP (the peer oracle) and its own invariants."""

from __future__ import annotations

import gpytorch
import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.errors import DimensionError, DTypeError, ShapeMismatchError


def _kernel() -> gpytorch.kernels.Kernel:
    k = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=1.5))
    k.base_kernel.lengthscale, k.outputscale = 0.7, 1.3
    return k


def _series(n: int = 40, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 6, n))
    y = np.sin(x) + 0.2 * rng.standard_normal(n) + 3.0
    y[[3, 17, 30]] = np.nan
    return xr.DataArray(
        y, dims="time", coords={"time": x}, name="y", attrs={"long_name": "signal", "units": "mV"}
    )


class _GPyTorchOracle(gpytorch.models.ExactGP):
    def __init__(self, x, y, kernel, mean, noise):
        lik = gpytorch.likelihoods.GaussianLikelihood(
            noise_constraint=gpytorch.constraints.GreaterThan(1e-8)
        ).double()
        super().__init__(x, y, lik)
        self.mean_module = gpytorch.means.ConstantMean().double()
        self.mean_module.constant = torch.tensor(mean, dtype=torch.float64)
        self.covar_module = kernel
        lik.noise = torch.tensor(noise, dtype=torch.float64)  # python floats round to float32

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _oracle(model: wb.ExactGP, da: xr.DataArray):
    obs = wb.data.from_dataarray(da)
    x, y = obs.observed()
    oracle = _GPyTorchOracle(x, y, model.kernel, model.mean.item(), model.noise.item())
    return oracle, x, y


def test_log_marginal_likelihood_equals_gpytorch():
    da = _series()
    model = wb.ExactGP(_kernel(), noise=0.04, mean=3.0)
    oracle, x, y = _oracle(model, da)
    with gpytorch.settings.max_cholesky_size(10_000):
        expected = oracle.likelihood(oracle(x)).log_prob(y).item()
    assert model.log_marginal_likelihood(da) == pytest.approx(expected, rel=0, abs=1e-9)


def test_posterior_equals_gpytorch_at_new_inputs():
    da = _series()
    model = wb.ExactGP(_kernel(), noise=0.04, mean=3.0)
    at = np.linspace(-1.0, 7.0, 25)
    ds = model.posterior(da, at=at)
    oracle, _, _ = _oracle(model, da)
    oracle.eval()
    with (
        torch.no_grad(),
        gpytorch.settings.max_cholesky_size(10_000),
        gpytorch.settings.fast_pred_var(False),
    ):
        f = oracle(torch.from_numpy(at))
    np.testing.assert_allclose(ds["mean"].values, f.mean.numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ds["variance"].values, f.variance.numpy(), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(ds["time"].values, at)


def test_fit_increases_marginal_likelihood_and_is_deterministic():
    da = _series()
    fits = [wb.ExactGP(_kernel(), noise=0.5) for _ in range(2)]
    before = fits[0].log_marginal_likelihood(da)
    for model in fits:
        model.fit(da, steps=5, progress=False)
    assert fits[0].log_marginal_likelihood(da) > before + 1.0
    assert fits[0].hyperparameters() == fits[1].hyperparameters()
    assert fits[0].fit_losses[-1] < fits[0].fit_losses[0]


def test_batch_dims_are_independent_series_sharing_hyperparameters():
    a, b = _series(seed=1), _series(seed=2)
    b = b.assign_coords(time=a.time)  # share one grid
    stacked = xr.concat([a, b], dim=xr.DataArray(["a", "b"], dims="unit", name="unit"))
    stacked = stacked.transpose("time", "unit")
    model = wb.ExactGP(_kernel(), noise=0.04, mean=3.0)
    lml = model.log_marginal_likelihood(stacked)
    assert lml.dims == ("unit",)
    assert lml.sel(unit="a") == pytest.approx(model.log_marginal_likelihood(a), abs=1e-12)
    ds = model.posterior(stacked)
    assert ds["mean"].dims == ("time", "unit")
    np.testing.assert_allclose(ds["mean"].sel(unit="b"), model.posterior(b)["mean"], atol=1e-12)


def test_datetime_coordinates_use_the_fitted_axis():
    da = _series()
    t0 = np.datetime64("2020-01-01T00:00", "ns")
    dt = da.assign_coords(time=t0 + (da.time.values * 86400e9).astype("timedelta64[ns]"))
    numeric, dated = wb.ExactGP(_kernel(), noise=0.04), wb.ExactGP(_kernel(), noise=0.04)
    numeric.fit(da, steps=2, progress=False)
    dated.fit(dt, steps=2, progress=False)
    assert dated.axis.unit == "D"
    np.testing.assert_allclose(
        dated.posterior(dt)["mean"], numeric.posterior(da)["mean"], atol=1e-6
    )
    with pytest.raises(DTypeError, match="time"):
        dated.posterior(da)


def test_observation_noise_adds_noise_variance():
    da = _series()
    model = wb.ExactGP(_kernel(), noise=0.04)
    latent = model.posterior(da)
    noisy = model.posterior(da, observation_noise=True)
    np.testing.assert_allclose(noisy.variance - latent.variance, 0.04, rtol=1e-12)


def test_posterior_labels_follow_the_input():
    da = _series()
    ds = wb.ExactGP(_kernel()).posterior(da)
    assert ds["mean"].attrs["units"] == "mV"
    assert ds.attrs["model"] == "ExactGP"
    assert "kernel.outputscale" in ds.attrs["hyperparameters"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [({"likelihood": "poisson"}, ValueError, "gaussian"), ({"noise": 0.0}, ValueError, "noise")],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        wb.ExactGP(_kernel(), **kwargs)


def test_bad_inputs_raise_named_errors():
    model = wb.ExactGP(_kernel())
    with pytest.raises(TypeError, match="Kernel"):
        wb.ExactGP("rbf")
    with pytest.raises(DimensionError, match="'x'"):
        model.posterior(_series(), dim="x")
    with pytest.raises(ShapeMismatchError, match="time"):
        model.posterior(_series(), at=np.zeros((2, 2)))


def test_set_hyperparameter_roundtrips_and_rejects_unknown_names():
    model = wb.ExactGP(_kernel())
    model.set_hyperparameter("kernel.base_kernel.lengthscale", 2.5)
    assert model.hyperparameters()["kernel.base_kernel.lengthscale"] == pytest.approx(2.5)
    with pytest.raises(KeyError, match="lengthscale"):
        model.set_hyperparameter("lengthscale", 1.0)


def test_reprs_are_deterministic():
    a, b = wb.ExactGP(_kernel()), wb.ExactGP(_kernel())
    assert repr(a) == repr(b)
    assert a._repr_html_() == b._repr_html_()
    assert "0x" not in a._repr_html_()
    assert "kernel.base_kernel.lengthscale = 0.7" in repr(a)
