"""Spike-train simulator: shapes, ground truth consistency, reproducibility, recovery."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.kernels import MaternKernel
from workbench.simulate.dynamics import integrate, van_der_pol


@pytest.mark.parametrize("latent", ["van_der_pol", "lorenz", "gp"])
def test_shapes_truth_and_reproducibility(latent):
    ds = wb.simulate.latent_spikes(
        n_units=7, n_latents=2, n_trials=3, n_bins=120, latent=latent, seed=4
    )
    assert dict(ds.spikes.sizes) == {"trial": 3, "time": 120, "unit": 7}
    assert ds.true_latent.dims == ("trial", "time", "latent")
    assert (ds.spikes >= 0).all() and ds.spikes.dtype.kind == "i"
    np.testing.assert_allclose(ds.true_latent.mean(("trial", "time")), 0, atol=1e-12)
    np.testing.assert_allclose(ds.true_latent.std(("trial", "time")), 1, atol=1e-12)
    log_rate = ds.true_latent.values @ ds.loading.values.T + ds.bias.values
    np.testing.assert_allclose(np.log(ds.rate.values), log_rate, rtol=1e-12)
    again = wb.simulate.latent_spikes(
        n_units=7, n_latents=2, n_trials=3, n_bins=120, latent=latent, seed=4
    )
    assert again.identical(ds)
    other = wb.simulate.latent_spikes(
        n_units=7, n_latents=2, n_trials=3, n_bins=120, latent=latent, seed=5
    )
    assert not np.array_equal(other.spikes.values, ds.spikes.values)
    assert ds.time.attrs["units"] == "s" and ds.rate.attrs["units"] == "Hz"


def test_rk4_matches_a_known_solution():
    # harmonic oscillator x'' = -x is van der Pol with mu = 0: x(t) = cos t
    states = integrate(van_der_pol(mu=0.0), np.array([[1.0, 0.0]]), 200, 0.05)
    t = np.arange(200) * 0.05
    np.testing.assert_allclose(states[0, :, 0], np.cos(t), atol=1e-9)


def test_bad_arguments():
    with pytest.raises(ValueError, match="latent in"):
        wb.simulate.latent_spikes(latent="rossler")
    with pytest.raises(ValueError, match="n_latents <= 2"):
        wb.simulate.latent_spikes(latent="van_der_pol", n_latents=3)
    with pytest.raises(ValueError, match="positive"):
        wb.simulate.latent_spikes(n_bins=0)


def test_markov_gp_recovers_a_simulated_log_rate():
    ds = wb.simulate.latent_spikes(
        n_units=1,
        n_latents=1,
        n_trials=1,
        n_bins=800,
        latent="gp",
        kernel=MaternKernel(nu=2.5, lengthscale=0.3),
        baseline_rate=60.0,
        loading_scale=1.0,
        seed=1,
    )
    spikes = ds.spikes.isel(trial=0, unit=0).astype(float)
    model = wb.MarkovGP(
        MaternKernel(nu=2.5, lengthscale=0.1), likelihood=wb.likelihoods.Poisson(bin_width=0.01)
    )
    model.fit(spikes, steps=4, progress=False)
    truth = np.log(ds.rate.isel(trial=0, unit=0))
    assert np.corrcoef(model.posterior(spikes)["mean"], truth)[0, 1] > 0.9
