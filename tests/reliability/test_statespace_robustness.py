"""Numerical robustness of the state-space engine across scales, gaps and precisions.

Every filtering path (compiled sequential, associative scans, square-root) is compared with the
dense float64 GP over lengthscales from 1e-3 to 1e4 grid steps and across gaps of 1e6 steps;
float32 runs are held to the tolerance documented on :class:`workbench.MarkovGP`; and a
non-finite result is never returned silently.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import event, given
from hypothesis import strategies as st

import workbench as wb
from workbench.errors import FitDivergedError, WorkbenchWarning
from workbench.kernels import HidaMaternKernel, MaternKernel
from workbench.ssm import rts_smoother
from workbench.ssm.site_filter import site_filter, site_smoother

PATHS = {
    "compiled": {"parallel": False},
    "scans": {"parallel": True},
    "square_root": {"square_root": True},
}
KERNELS = ("matern12", "matern32", "matern52", "hida1", "hida2")
RATIOS = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4)  # lengthscale / grid step


def _kernel(name: str, lengthscale: float, outputscale: float = 1.0):
    if name.startswith("matern"):
        nu = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}[name]
        return MaternKernel(nu=nu, lengthscale=lengthscale, outputscale=outputscale)
    order = int(name[-1])
    return HidaMaternKernel(
        order=order, lengthscale=lengthscale, frequency=0.5 / lengthscale, outputscale=outputscale
    )


def _series(x: np.ndarray, seed: int = 0, scale: float = 1.0, noise: float = 0.01):
    rng = np.random.default_rng(seed)
    y = scale * (np.sin(x / 7.0) + np.sqrt(noise) * rng.standard_normal(x.size))
    return xr.DataArray(y, dims="time", coords={"time": x})


def _assert_finite(ds: xr.Dataset) -> None:
    for name, var in ds.data_vars.items():
        assert np.isfinite(var.values).all(), f"{name} has non-finite values"


def _assert_every_path_equals_dense(name, ratio, da, at, atol_mean, atol_var, rtol_lml):
    """Posterior at ``at`` and log marginal likelihood of each path against the dense GP;
    returns the last path's posterior."""
    dense = wb.ExactGP(_kernel(name, ratio), noise=0.01)
    ref, ref_lml = dense.posterior(da, at=at), dense.log_marginal_likelihood(da)
    for path, options in PATHS.items():
        model = wb.MarkovGP(_kernel(name, ratio), noise=0.01, **options)
        post = model.posterior(da, at=at)
        _assert_finite(post)
        np.testing.assert_allclose(post["mean"], ref["mean"], rtol=0, atol=atol_mean, err_msg=path)
        np.testing.assert_allclose(post.variance, ref.variance, rtol=0, atol=atol_var, err_msg=path)
        lml = model.log_marginal_likelihood(da)
        assert lml == pytest.approx(ref_lml, rel=rtol_lml, abs=1e-8), path
    return post


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("name", KERNELS)
def test_every_path_equals_the_dense_gp_across_lengthscales(name, ratio):
    da = _series(np.arange(60, dtype=np.float64))
    da[[5, 6, 40]] = np.nan
    at = np.array([-3.5, 10.5, 70.0])
    _assert_every_path_equals_dense(name, ratio, da, at, 1e-10, 1e-12, 0)


@pytest.mark.parametrize("ratio", [1.0, 1e2, 1e4])
@pytest.mark.parametrize("name", ["matern52", "hida2"])
def test_gaps_of_a_million_steps(name, ratio):
    gap = 1e6
    da = _series(np.concatenate([np.arange(40.0), gap + np.arange(40.0)]), seed=1)
    at = np.array([45.0, gap / 2, gap - 5.0, gap + 50.0])
    post = _assert_every_path_equals_dense(name, ratio, da, at, 1e-9, 1e-10, 1e-10)
    # in the middle of the gap the data are forgotten: back to the prior
    mid = post.sel(time=gap / 2)
    assert float(mid["mean"]) == pytest.approx(0.0, abs=1e-6)
    assert float(mid.variance) == pytest.approx(1.0, rel=1e-6)


# documented on MarkovGP: float32 means within 1e-5 of float64; variances within 1e-3 of the
# largest variance (2e-4 with square_root=True), for noise >= 1e-4 of the signal variance
FLOAT32_VARIANCE_TOL = {"default": 1e-3, "square_root": 2e-4}


@pytest.mark.parametrize("noise", [1e-2, 1e-4])
@pytest.mark.parametrize("step", [1e-3, 1e-1, 1e1, 1e3])  # grid step / lengthscale
@pytest.mark.parametrize("name", ["matern12", "matern52", "hida2"])
def test_float32_stays_within_the_documented_tolerance(name, step, noise):
    lengthscale = 1.0 / step
    x = np.arange(500, dtype=np.float64)
    rng = np.random.default_rng(3)
    da = xr.DataArray(
        np.sin(0.7 * x / lengthscale) + np.sqrt(noise) * rng.standard_normal(x.size),
        dims="time",
        coords={"time": x},
    )
    ref = wb.MarkovGP(_kernel(name, lengthscale), noise=noise)
    expected = ref.posterior(da)
    for path, tolerance in FLOAT32_VARIANCE_TOL.items():
        model = wb.MarkovGP(_kernel(name, 1.0), noise=noise, square_root=path == "square_root")
        model.load_state_dict(ref.state_dict())
        model.float()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", WorkbenchWarning)
            got = model.posterior(da)
        _assert_finite(got)
        assert float(abs(got["mean"] - expected["mean"]).max()) <= 1e-5, path
        error = abs(got.variance - expected.variance).max() / expected.variance.max()
        assert float(error) <= tolerance, (path, float(error))


@given(
    log_lengthscale=st.floats(-3, 4),
    log_outputscale=st.floats(-6, 6),
    log_noise=st.floats(-8, 2),
    log_scale=st.floats(-6, 6),
    name=st.sampled_from(KERNELS),
    path=st.sampled_from(sorted(PATHS)),
)
def test_extreme_hyperparameters_never_return_nan(
    log_lengthscale, log_outputscale, log_noise, log_scale, name, path
):
    """Any combination gives finite outputs or raises FitDivergedError; never NaN."""
    x = np.arange(50, dtype=np.float64)
    da = _series(x, seed=2, scale=10.0**log_scale)
    kernel = _kernel(name, 10.0**log_lengthscale, 10.0**log_outputscale)
    model = wb.MarkovGP(kernel, noise=10.0**log_noise, **PATHS[path])
    try:
        post = model.posterior(da, at=np.array([-2.0, 25.5, 60.0]))
        lml = model.log_marginal_likelihood(da)
    except FitDivergedError:
        event("refused with FitDivergedError")
        return
    event("finite")
    _assert_finite(post)
    assert np.isfinite(lml)
    assert (post.variance >= 0).all()


def test_a_non_finite_filter_result_is_refused(monkeypatch):
    da = _series(np.arange(30.0))
    model = wb.MarkovGP(MaternKernel(nu=1.5), noise=0.1)
    original = model._filter

    def poisoned(*args, **kwargs):
        result = original(*args, **kwargs)
        return result._replace(
            log_marginal=torch.full_like(result.log_marginal, float("nan")),
            mean=torch.full_like(result.mean, float("nan")),
        )

    monkeypatch.setattr(model, "_filter", poisoned)
    with pytest.raises(FitDivergedError, match="finite log marginal"):
        model.log_marginal_likelihood(da)
    with pytest.raises(FitDivergedError, match="finite predictive moments"):
        model.posterior(da)


@pytest.mark.parametrize("ratio", [1e-3, 1e-1, 1e1, 1e4])
@pytest.mark.parametrize("name", ["matern12", "matern52", "hida2"])
def test_site_smoother_equals_the_dense_gp_across_scales_and_a_gap(name, ratio):
    """The information-form engine of the latent models, on scalar Gaussian sites."""
    x = np.concatenate([np.arange(30.0), 1e6 + np.arange(30.0)])
    da = _series(x, seed=4)
    ref = wb.ExactGP(_kernel(name, ratio), noise=0.01).posterior(da)
    with torch.no_grad():
        ssm = wb.MarkovGP(_kernel(name, ratio))._state_space(torch.as_tensor(x))
    A, Q, H, Pinf, index = ssm
    y = torch.as_tensor(da.values)
    info, precision = (y / 0.01)[:, None], torch.full((x.size, 1, 1), 1 / 0.01, dtype=y.dtype)
    compiled = site_smoother(A, Q, H, info, precision, Pinf, index)
    filtered = site_filter(A, Q, H, info, precision, Pinf, index)
    smoothed = rts_smoother(A[index], filtered)
    for path, mean, var in [
        ("compiled", compiled.mean[:, 0], compiled.cov[:, 0, 0]),
        ("torch", smoothed.mean @ H[0], (smoothed.cov @ H[0]) @ H[0]),
    ]:
        np.testing.assert_allclose(mean, ref["mean"], rtol=0, atol=1e-10, err_msg=path)
        np.testing.assert_allclose(var, ref.variance, rtol=0, atol=1e-12, err_msg=path)
