"""MarkovGP equals the dense ExactGP to float64 round-off; API and bad input."""

from __future__ import annotations

import gpytorch
import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.errors import CoordinateError, EmptyDataError, ShapeMismatchError
from workbench.kernels import HidaMaternKernel, MaternKernel

KERNELS = {
    **{
        f"matern{2 * p + 1}2": (lambda p=p: MaternKernel(nu=p + 0.5, lengthscale=0.8))
        for p in range(4)
    },
    **{
        f"hida_matern{p}": (lambda p=p: HidaMaternKernel(order=p, lengthscale=1.5, frequency=2.0))
        for p in range(4)
    },
    "sum": lambda: (
        HidaMaternKernel(order=1, lengthscale=3.0, frequency=1.0, outputscale=0.5)
        + MaternKernel(nu=2.5, lengthscale=0.7)
    ),
}


def _irregular(n=200, seed=0, batch=None):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 15, n))
    shape = (n,) if batch is None else (n, batch)
    signal = np.sin(x) if batch is None else np.sin(x)[:, None]
    y = signal + 0.3 * rng.standard_normal(shape) + 1.0
    y[rng.random(shape) < 0.2] = np.nan  # 20% missing
    dims = ("time",) if batch is None else ("time", "unit")
    return xr.DataArray(y, dims=dims, coords={"time": x}, name="y", attrs={"units": "V"})


def _pair(name):
    kernel = KERNELS[name]()
    return wb.MarkovGP(kernel, noise=0.07, mean=1.0), wb.ExactGP(kernel, noise=0.07, mean=1.0)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_equals_dense_gp_on_irregular_grid_with_missing_values(name):
    markov, dense = _pair(name)
    da = _irregular()
    at = np.concatenate([np.linspace(-3, 18, 50), da.time.values[::7]])  # also existing times
    a, b = markov.posterior(da, at=at), dense.posterior(da, at=at)
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(a["variance"], b["variance"], rtol=0, atol=1e-10)
    lml_a, lml_b = markov.log_marginal_likelihood(da), dense.log_marginal_likelihood(da)
    assert lml_a == pytest.approx(lml_b, abs=1e-9)
    c, d = markov.posterior(da), dense.posterior(da)
    np.testing.assert_allclose(c["mean"], d["mean"], rtol=0, atol=1e-10)


def test_batch_dims_share_hyperparameters_and_match_dense():
    markov, dense = _pair("sum")
    da = _irregular(n=80, batch=3)
    np.testing.assert_allclose(
        markov.log_marginal_likelihood(da), dense.log_marginal_likelihood(da), rtol=0, atol=1e-9
    )
    post = markov.posterior(da)
    assert post["mean"].dims == ("time", "unit")
    np.testing.assert_allclose(post["mean"], dense.posterior(da)["mean"], rtol=0, atol=1e-10)


def test_fit_gradients_match_dense_model():
    markov, dense = _pair("matern52")
    da = _irregular(n=60)
    markov.fit(da, steps=3, progress=False)
    dense.kernel = MaternKernel(nu=2.5, lengthscale=0.8).double()
    dense.fit(da, steps=3, progress=False)
    for key, value in markov.hyperparameters().items():
        assert value == pytest.approx(dense.hyperparameters()[key], rel=1e-6), key


def test_fit_recovers_a_lengthscale_roughly():
    rng = np.random.default_rng(3)
    x = np.linspace(0, 100, 500)
    truth = MaternKernel(nu=1.5, lengthscale=2.0).double()
    K = truth.covariance(torch.from_numpy(x[:, None] - x[None, :])).detach().numpy()
    f = np.linalg.cholesky(K + 1e-9 * np.eye(x.size)) @ rng.standard_normal(x.size)
    da = xr.DataArray(f + 0.1 * rng.standard_normal(x.size), dims="time", coords={"time": x})
    model = wb.MarkovGP(MaternKernel(nu=1.5, lengthscale=0.5), noise=0.5).fit(
        da, steps=30, progress=False
    )
    hp = model.hyperparameters()
    assert hp["kernel.lengthscale"] == pytest.approx(2.0, rel=0.3)
    assert hp["noise"] == pytest.approx(0.01, rel=0.5)


def test_datetime_input_forecast_and_save_load_bit_for_bit(tmp_path):
    da = _irregular(n=50)
    t0 = np.datetime64("2001-01-01", "ns")
    da = da.assign_coords(time=t0 + (da.time.values * 86400e9).astype("timedelta64[ns]"))
    model = wb.MarkovGP(HidaMaternKernel(order=1, lengthscale=3.0, frequency=0.5), noise=0.1)
    model.fit(da, steps=2, progress=False)
    at = np.arange("2001-01-01", "2001-02-10", dtype="datetime64[D]").astype("datetime64[ns]")
    post = model.posterior(da, at=at)
    np.testing.assert_array_equal(post.time.values, at)
    model.save(tmp_path / "m.wbm")
    again = wb.load(tmp_path / "m.wbm")
    assert type(again) is wb.MarkovGP
    np.testing.assert_array_equal(again.posterior(da, at=at)["mean"], post["mean"])
    np.testing.assert_array_equal(again.posterior(da, at=at)["variance"], post["variance"])


def test_single_observation():
    da = xr.DataArray([2.0], dims="time", coords={"time": [1.0]})
    markov, dense = wb.MarkovGP(MaternKernel(), noise=0.1), wb.ExactGP(MaternKernel(), noise=0.1)
    assert markov.log_marginal_likelihood(da) == pytest.approx(dense.log_marginal_likelihood(da))
    np.testing.assert_allclose(
        markov.posterior(da, at=[0.0, 1.0, 2.0])["mean"],
        dense.posterior(da, at=[0.0, 1.0, 2.0])["mean"],
        atol=1e-12,
    )


def test_bad_input():
    with pytest.raises(TypeError, match="state-space kernel"):
        wb.MarkovGP(gpytorch.kernels.RBFKernel())
    model = wb.MarkovGP(MaternKernel())
    unsorted = xr.DataArray([1.0, 2.0, 3.0], dims="time", coords={"time": [0.0, 2.0, 1.0]})
    with pytest.raises(CoordinateError, match=r"increasing.*'time'"):
        model.posterior(unsorted)
    duplicate = xr.DataArray([1.0, 2.0], dims="time", coords={"time": [1.0, 1.0]})
    with pytest.raises(CoordinateError, match=r"unique.*'time'"):
        model.fit(duplicate, progress=False)
    with pytest.raises(EmptyDataError, match="'time'"):
        model.posterior(xr.DataArray([np.nan, np.nan], dims="time", coords={"time": [0.0, 1.0]}))


def test_sequential_option_equals_parallel_scans(tmp_path):
    da = _irregular(n=60)
    kernel = HidaMaternKernel(order=2, lengthscale=1.0, frequency=1.0)
    seq = wb.MarkovGP(kernel, parallel=False, noise=0.1)
    par = wb.MarkovGP(kernel, parallel=True, noise=0.1)
    assert seq.log_marginal_likelihood(da) == pytest.approx(
        par.log_marginal_likelihood(da), abs=1e-10
    )
    np.testing.assert_allclose(seq.posterior(da)["mean"], par.posterior(da)["mean"], atol=1e-10)
    seq.save(tmp_path / "seq.wbm")
    assert wb.load(tmp_path / "seq.wbm").parallel is False
    with pytest.raises(ValueError, match="parallel"):
        wb.MarkovGP(kernel, parallel="yes")


def test_linear_trend_matches_dense_and_extrapolates():
    x = np.linspace(0, 20, 120)
    rng = np.random.default_rng(5)
    da = xr.DataArray(
        3.0 + 0.5 * x + np.sin(x) + 0.1 * rng.standard_normal(x.size),
        dims="time",
        coords={"time": x},
    )
    kernel = MaternKernel(nu=2.5, lengthscale=1.0)
    markov = wb.MarkovGP(kernel, noise=0.01, trend="linear").fit(da, steps=3, progress=False)
    assert markov.hyperparameters()["slope"] == pytest.approx(0.5, abs=0.1)
    dense = wb.ExactGP(kernel, noise=0.01, trend="linear")
    dense.load_state_dict(markov.state_dict())
    at = np.linspace(18, 40, 12)
    a, b = markov.posterior(da, at=at), dense.posterior(da, at=at)
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=0, atol=1e-9)
    assert float(a["mean"][-1]) == pytest.approx(3.0 + 0.5 * 40, abs=4.0)  # not back to ~8
    assert markov.log_marginal_likelihood(da) == pytest.approx(dense.log_marginal_likelihood(da))
    with pytest.raises(ValueError, match="trend"):
        wb.MarkovGP(kernel, trend="quadratic")


@pytest.mark.parametrize("step", [1e-1, 1e-2, 1e-3])
@pytest.mark.parametrize("order", [1, 2])
def test_float32_stays_within_documented_error(step, order):
    # documented in MarkovGP: |Δ mean| <= 1e-4 (unit-scale data), variance <= 5e-4 relative
    x = np.arange(2000) * step
    rng = np.random.default_rng(order)
    da = xr.DataArray(
        np.sin(3 * x) + 0.1 * rng.standard_normal(x.size), dims="time", coords={"time": x}
    )
    kernel = HidaMaternKernel(order=order, lengthscale=1.0, frequency=3.0)
    m64 = wb.MarkovGP(kernel, noise=0.01)
    m32 = wb.MarkovGP(HidaMaternKernel(order=order), noise=0.01)
    m32.load_state_dict(m64.state_dict())
    m32.float()
    a, b = m64.posterior(da), m32.posterior(da)
    assert float(abs(a["mean"] - b["mean"]).max()) <= 1e-4
    assert float(abs(a.variance - b.variance).max() / a.variance.max()) <= 5e-4


def test_unshared_hyperparameters_fit_each_series_on_its_own(tmp_path):
    rng = np.random.default_rng(7)
    x = np.linspace(0, 30, 300)
    fast = np.sin(4 * x) + 0.1 * rng.standard_normal(x.size)
    slow = np.sin(0.3 * x) + 0.1 * rng.standard_normal(x.size)
    da = xr.DataArray(
        np.stack([fast, slow], -1),
        dims=("time", "unit"),
        coords={"time": x, "unit": ["fast", "slow"]},
    )
    model = wb.MarkovGP(MaternKernel(nu=2.5), noise=0.1, share_hyperparameters=False)
    model.fit(da, steps=10, progress=False)
    hp = model.hyperparameters()
    ls_fast, ls_slow = hp["members.0.kernel.lengthscale"], hp["members.1.kernel.lengthscale"]
    assert ls_slow > 3 * ls_fast
    # each member equals a single-series model with the same hyper-parameters
    single = wb.MarkovGP(MaternKernel(nu=2.5), noise=0.1)
    single.load_state_dict(model.members[1].state_dict())
    single.axis = model.axis
    post = model.posterior(da, at=np.linspace(0, 35, 20))
    np.testing.assert_allclose(
        post["mean"].sel(unit="slow"),
        single.posterior(da.sel(unit="slow"), at=np.linspace(0, 35, 20))["mean"],
        rtol=0,
        atol=1e-12,
    )
    lml = model.log_marginal_likelihood(da)
    assert lml.sel(unit="slow") == pytest.approx(
        single.log_marginal_likelihood(da.sel(unit="slow"))
    )
    model.save(tmp_path / "m.wbm")
    again = wb.load(tmp_path / "m.wbm")
    np.testing.assert_array_equal(again.posterior(da)["mean"], model.posterior(da)["mean"])
    with pytest.raises(ShapeMismatchError, match="2 series"):
        model.posterior(da.isel(unit=[0]))
    noisy = model.posterior(da, observation_noise=True)
    np.testing.assert_allclose(
        (noisy.variance - model.posterior(da).variance).sel(unit="slow"),
        hp["members.1.noise"],
        rtol=1e-12,
    )
