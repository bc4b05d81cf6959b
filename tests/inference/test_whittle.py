"""Debiased Whittle likelihood: brute-force oracles and parameter recovery."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.errors import WorkbenchWarning
from workbench.inference import expected_periodogram, is_regular_grid, periodogram
from workbench.kernels import HidaMaternKernel, MaternKernel
from workbench.ssm import sample_state_space_prior


def test_periodogram_equals_direct_dft():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 11, generator=g, dtype=torch.float64)
    dt, T = 0.3, 11
    power = periodogram(y, dt)
    t = torch.arange(T, dtype=torch.float64)
    for k in range(1, T // 2 + 1):
        basis = torch.exp(-2j * torch.pi * k * t / T)
        direct = dt / T * (y.to(torch.complex128) @ basis).abs().square()
        torch.testing.assert_close(power[:, k - 1], direct, rtol=1e-12, atol=1e-14)


def test_expected_periodogram_equals_quadratic_form_of_the_covariance():
    kernel = HidaMaternKernel(order=1, lengthscale=0.4, frequency=5.0).double()
    T, dt = 16, 0.1
    lags = torch.arange(T, dtype=torch.float64) * dt
    with torch.no_grad():
        cov = kernel.covariance(lags)
        C = kernel.covariance(lags[:, None] - lags[None, :]).to(torch.complex128)
        expected = expected_periodogram(cov, dt)
    t = torch.arange(T, dtype=torch.float64)
    for k in range(1, T // 2 + 1):
        e = torch.exp(-2j * torch.pi * k * t / T)
        direct = (dt / T) * (e.conj() @ C @ e).real
        assert float(expected[k - 1]) == pytest.approx(float(direct), rel=1e-12)


def test_regular_grid_detection():
    assert is_regular_grid(np.arange(5) * 0.1)
    assert not is_regular_grid(np.array([0.0, 1.0, 3.0]))
    assert not is_regular_grid(np.array([1.0]))


def _simulated(T=65_536, dt=0.01, lengthscale=0.2, noise=0.01, seed=0):
    truth = MaternKernel(nu=1.5, lengthscale=lengthscale).double()
    x = torch.arange(T, dtype=torch.float64) * dt
    g = torch.Generator().manual_seed(seed)
    f = sample_state_space_prior(truth, x, 1, g)[0]
    y = f + noise**0.5 * torch.randn(T, generator=g, dtype=torch.float64)
    return xr.DataArray(y.numpy(), dims="time", coords={"time": x.numpy()})


def test_whittle_recovers_lengthscale_within_five_percent():
    da = _simulated()
    model = wb.MarkovGP(MaternKernel(nu=1.5, lengthscale=0.5), noise=0.1)
    model.fit(da, method="whittle", steps=10, progress=False)
    hp = model.hyperparameters()
    assert hp["kernel.lengthscale"] == pytest.approx(0.2, rel=0.05)
    assert hp["kernel.outputscale"] == pytest.approx(1.0, rel=0.1)
    assert hp["noise"] == pytest.approx(0.01, rel=0.1)


def test_prior_samples_have_the_kernel_covariance():
    kernel = HidaMaternKernel(order=1, lengthscale=0.5, frequency=3.0).double()
    x = torch.linspace(0, 3, 7, dtype=torch.float64)
    draws = sample_state_space_prior(kernel, x, 40_000, torch.Generator().manual_seed(1))
    empirical = draws.T @ draws / draws.shape[0]
    with torch.no_grad():
        exact = kernel.covariance(x[:, None] - x[None, :])
    torch.testing.assert_close(empirical, exact, rtol=0, atol=0.03)


def test_whittle_falls_back_to_marginal_likelihood_with_a_warning():
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(0, 10, 60))
    da = xr.DataArray(np.sin(x) + 0.1 * rng.standard_normal(60), dims="time", coords={"time": x})
    a = wb.MarkovGP(MaternKernel(nu=1.5), noise=0.1)
    b = wb.MarkovGP(MaternKernel(nu=1.5), noise=0.1)
    with pytest.warns(WorkbenchWarning, match="irregular grid"):
        a.fit(da, method="whittle", steps=3, progress=False)
    b.fit(da, method="marginal", steps=3, progress=False)
    assert a.hyperparameters() == b.hyperparameters()
    regular = da.assign_coords(time=np.arange(60.0))
    gappy = regular.where(regular.time > 1)
    with pytest.warns(WorkbenchWarning, match="missing values"):
        a.fit(gappy, method="whittle", steps=1, progress=False)
    with pytest.raises(ValueError, match="method"):
        a.fit(da, method="laplace")


def test_whittle_with_unshared_hyperparameters():
    a = _simulated(T=8192, lengthscale=0.2, seed=1)
    b = _simulated(T=8192, lengthscale=1.0, seed=2)
    da = xr.concat([a, b], dim="unit")
    model = wb.MarkovGP(
        MaternKernel(nu=1.5, lengthscale=0.5), noise=0.1, share_hyperparameters=False
    )
    model.fit(da, method="whittle", steps=10, progress=False)
    hp = model.hyperparameters()
    assert hp["members.0.kernel.lengthscale"] == pytest.approx(0.2, rel=0.1)
    assert hp["members.1.kernel.lengthscale"] == pytest.approx(1.0, rel=0.2)
