"""LatentTrajectoryGP: oracle against MarkovGP CVI, latent recovery, persistence, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.errors import DimensionError, ValueRangeError, WorkbenchWarning
from workbench.kernels import MaternKernel
from workbench.likelihoods import Poisson
from workbench.testing import arviz_checks


def _aligned_r2(inferred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    X = np.c_[inferred.reshape(-1, inferred.shape[-1]), np.ones(inferred[..., 0].size)]
    Z = truth.reshape(-1, truth.shape[-1])
    coef, *_ = np.linalg.lstsq(X, Z, rcond=None)
    residual = Z - X @ coef
    return 1 - (residual**2).sum(0) / ((Z - Z.mean(0)) ** 2).sum(0)


def test_one_latent_one_unit_e_step_equals_markov_gp_cvi():
    ds = wb.simulate.latent_spikes(
        n_units=1, n_latents=1, n_trials=1, n_bins=300, latent="gp", baseline_rate=40.0, seed=2
    )
    spikes = ds.spikes.isel(trial=0).astype(float)
    lt = wb.LatentTrajectoryGP(
        1,
        kernel=MaternKernel(nu=1.5, lengthscale=0.2),
        likelihood=Poisson(bin_width=0.01),
        cvi_steps=12,
        cvi_lr=0.6,
        n_units=1,
    )
    with torch.no_grad():
        lt.C.fill_(1.0)
        lt.d.fill_(0.0)
    post = lt.posterior(spikes)
    reference = wb.MarkovGP(
        MaternKernel(nu=1.5, lengthscale=0.2),
        mean=0.0,
        likelihood=Poisson(bin_width=0.01),
        cvi_steps=12,
        cvi_lr=0.6,
    )
    ref = reference.posterior(spikes.isel(unit=0))
    np.testing.assert_allclose(post.latent_mean.values[:, 0], ref["mean"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        post.latent_variance.values[:, 0], ref["variance"], rtol=0, atol=1e-10
    )


def test_recovers_van_der_pol_latents():
    ds = wb.simulate.latent_spikes(
        n_units=50, n_latents=2, n_trials=10, n_bins=500, latent="van_der_pol", seed=0
    )
    lt = wb.LatentTrajectoryGP(
        2, kernel=MaternKernel(nu=2.5, lengthscale=0.1), likelihood=Poisson(bin_width=0.01)
    )
    lt.fit(ds.spikes, steps=20, progress=False)
    assert lt.fit_elbo[-1] > lt.fit_elbo[0]  # Whittle M-steps are not exact ELBO ascent
    post = lt.posterior()
    assert post.latent_mean.dims == ("trial", "time", "latent")
    np.testing.assert_array_equal(post.elbo_trace.values, lt.fit_elbo)
    assert post.rate.dims == ("trial", "time", "unit") and post.rate.attrs["units"] == "1/s"
    r2 = _aligned_r2(post.latent_mean.values, ds.true_latent.values)
    assert r2.mean() >= 0.95 and r2.min() >= 0.93, r2  # overall (SST-weighted ~ mean) and each
    log_rate_err = np.abs(np.log(post.rate) - np.log(ds.rate)).median()
    assert float(log_rate_err) < 0.15


def test_save_load_and_posterior_on_new_data(tmp_path):
    ds = wb.simulate.latent_spikes(
        n_units=8, n_latents=1, n_trials=2, n_bins=150, latent="gp", seed=3
    )
    lt = wb.LatentTrajectoryGP(1, likelihood=Poisson(bin_width=0.01), cvi_steps=5)
    lt.fit(ds.spikes, steps=2, progress=False)
    lt.save(tmp_path / "lt.wbm")
    again = wb.load(tmp_path / "lt.wbm")
    a, b = lt.posterior(ds.spikes), again.posterior(ds.spikes)
    np.testing.assert_array_equal(a.latent_mean, b.latent_mean)
    np.testing.assert_array_equal(a.rate, b.rate)
    # the fitted spikes and q are saved too: the fitted posterior is the same after loading
    np.testing.assert_array_equal(again.posterior().latent_mean, lt.posterior().latent_mean)
    with pytest.raises(ValueError, match="expected spikes"):
        wb.LatentTrajectoryGP.from_config(lt.get_config()).posterior()


def test_without_trial_dim_and_bad_input():
    ds = wb.simulate.latent_spikes(n_units=3, n_latents=1, n_trials=1, n_bins=80, seed=1)
    single = ds.spikes.isel(trial=0)
    lt = wb.LatentTrajectoryGP(1, likelihood=Poisson(bin_width=0.01), cvi_steps=3)
    post = lt.fit(single, steps=1, progress=False).posterior()
    assert post.latent_mean.dims == ("time", "latent")
    with pytest.raises(DimensionError, match="'unit'"):
        lt.posterior(single.rename(unit="neuron"))
    with pytest.raises(ValueRangeError, match="counts"):
        lt.posterior(single.copy(data=-single.values))
    with pytest.raises(ValueRangeError, match="integer counts"):
        lt.posterior(single + 0.5)
    with pytest.warns(WorkbenchWarning, match="not identifiable"):
        wb.LatentTrajectoryGP(5, cvi_steps=1).fit(single, steps=1, progress=False)
    with pytest.raises(ValueError, match="n_latents"):
        wb.LatentTrajectoryGP(0)
    with pytest.raises(ValueError, match="one per latent"):
        wb.LatentTrajectoryGP(2, kernel=[MaternKernel()])
    extra = xr.concat([single, single], dim="session")
    with pytest.raises(DimensionError, match="session"):
        lt.posterior(extra)


@pytest.mark.arviz
def test_posterior_draws_match_the_moments_and_feed_arviz():
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    ds = wb.simulate.latent_spikes(
        n_units=6, n_latents=2, n_trials=2, n_bins=60, latent="gp", seed=5
    )
    lt = wb.LatentTrajectoryGP(2, likelihood=Poisson(bin_width=0.01), cvi_steps=5)
    lt.fit(ds.spikes, steps=2, progress=False)
    post = lt.posterior()
    draws = lt.sample_latents(2000, seed=1).numpy()  # (S, R, K, T)
    mean = draws.mean(0).transpose(0, 2, 1)
    var = draws.var(0).transpose(0, 2, 1)
    sd = np.sqrt(post.latent_variance.values)
    assert np.abs(mean - post.latent_mean.values).max() < 5 * sd.max() / np.sqrt(2000)
    np.testing.assert_allclose(var, post.latent_variance.values, rtol=0.15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = lt.to_inference_data(num_samples=50, log_likelihood=True)
        groups = {"posterior", "posterior_predictive", "observed_data", "log_likelihood"}
        assert groups <= arviz_checks.group_names(idata)
        assert idata.posterior["latent_trajectory"].dims == (
            "chain",
            "draw",
            "trial",
            "time",
            "latent",
        )
        assert idata.observed_data["spikes"].dims == ("trial", "time", "unit")
        summary = arviz_checks.summary(idata, var_names=["latent_trajectory"], kind="stats")
        assert len(summary) == 2 * 60 * 2
        arviz_checks.plot_ppc(idata, var_names=["spikes"], num_samples=10)
