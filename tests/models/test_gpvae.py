"""GP-VAEs: closed-form terms against Monte Carlo, data edge, outputs, persistence."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch

import workbench as wb
from workbench.data.multimodal import trial_data
from workbench.errors import (
    CoordinateError,
    DimensionError,
    EmptyDataError,
    ShapeMismatchError,
    ValueRangeError,
)
from workbench.models.gpvae_modalities import PoissonModality
from workbench.testing import arviz_checks

KINDS = {"spikes": "poisson", "frames": "gaussian"}


@pytest.fixture(scope="module")
def small():
    ds = wb.simulate.multimodal_trials(n_trials=12, n_bins=30, n_units=20, image_size=8, seed=3)
    model = wb.MultimodalGPVAE(KINDS, seed=1)
    model.fit(ds[["spikes", "frames"]], epochs=2, batch_size=6, progress=False)
    return ds, model


def test_poisson_expectation_is_exact():
    torch.manual_seed(0)
    net = PoissonModality(7, 3).double()
    x = torch.poisson(torch.full((2, 5, 7), 2.0, dtype=torch.float64))
    observed = (torch.rand(2, 5, 7) > 0.2).double()
    mean = torch.randn(2, 3, 5, dtype=torch.float64)
    var = 0.3 * torch.rand(2, 3, 5, dtype=torch.float64)
    exact = net.expected_log_prob(x, observed, mean, var)
    draws = mean + var.sqrt() * torch.randn(100_000, *mean.shape, dtype=torch.float64)
    with torch.no_grad():
        values = torch.stack([net.log_prob(x, observed, z).sum(-1) for z in draws[:20_000]])
    mc, se = values.mean(0), values.std(0) / math.sqrt(values.shape[0])
    assert bool((abs(exact.detach() - mc) < 4 * se + 1e-9).all()), (exact, mc, se)


def test_closed_form_elbo_equals_the_monte_carlo_elbo(small):
    ds, model = small
    prepared = trial_data(ds, KINDS, dtype=torch.float32)
    arrays, n_bins, n = prepared.modalities, len(prepared.time), len(prepared.trials)
    mean_field = pyro.infer.TraceMeanField_ELBO()
    with torch.no_grad():
        closed = [
            mean_field.loss(model._model, model._guide, arrays, n, n_bins) for _ in range(300)
        ]
        sampled = pyro.infer.Trace_ELBO(num_particles=1)
        mc = [
            sampled.loss(model._model, model._guide, arrays, n, n_bins, closed_form=False)
            for _ in range(300)
        ]
    closed, mc = np.array(closed), np.array(mc)
    se = math.hypot(closed.std(), mc.std()) / math.sqrt(300)
    assert abs(closed.mean() - mc.mean()) < 4 * se


def test_posterior_is_labelled_and_predicts_a_missing_modality(small):
    ds, model = small
    post = model.posterior(ds[["spikes", "frames"]])
    assert post["latent_mean"].dims == ("trial", "time", "latent")
    assert list(post["latent"].values) == ["shared", "spikes", "frames"]
    assert list(post["group"].values) == ["shared", "spikes", "frames"]
    assert post["frames_mean"].dims == ("trial", "time", "row", "col")
    assert post["spikes_mean"].shape == ds["spikes"].shape
    np.testing.assert_array_equal(post["time"].values, ds["time"].values)
    assert all(bool(np.isfinite(post[v]).all()) for v in post.data_vars)
    cross = model.posterior(ds[["spikes"]])
    assert "frames_mean" in cross
    assert "predicted across modalities" in cross["frames_mean"].attrs["long_name"]
    # the frames' own latent falls back to its prior: mean 0, variance about 1
    own = cross["latent_variance"].sel(latent="frames")
    assert float(abs(cross["latent_mean"].sel(latent="frames")).max()) < 1e-6
    assert 0.8 < float(own.mean()) < 1.2


def test_other_trial_lengths_without_retraining(small):
    _, model = small
    longer = wb.simulate.multimodal_trials(n_trials=3, n_bins=45, n_units=20, image_size=8)
    post = model.posterior(longer[["spikes", "frames"]])
    assert post.sizes["time"] == 45 and bool(np.isfinite(post["latent_mean"]).all())


def test_missing_frames_and_values_are_left_out(small):
    ds, model = small
    frames = ds["frames"].copy()
    frames[0, 3:9] = np.nan  # whole frames
    frames[1, 2, 0, 0] = np.nan  # one pixel
    post = model.posterior(ds[["spikes"]].assign(frames=frames))
    assert bool(np.isfinite(post["frames_mean"]).all())


def test_bad_input(small):
    ds, model = small
    spikes = ds["spikes"].copy()
    spikes[0, 0, 0] = -1
    with pytest.raises(ValueRangeError, match="counts"):
        model.posterior(ds[["frames"]].assign(spikes=spikes))
    with pytest.raises(ValueRangeError, match="counts"):
        model.posterior(ds[["frames"]].assign(spikes=ds["spikes"] + 0.5))
    frames = ds["frames"].copy()
    frames[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueRangeError, match="finite"):
        model.posterior(ds[["spikes"]].assign(frames=frames))
    shifted = ds["frames"].assign_coords(trial=ds["trial"].values + 100)
    with pytest.raises(ShapeMismatchError, match="trial"):
        model.posterior({"spikes": ds["spikes"], "frames": shifted})
    with pytest.raises(EmptyDataError):
        model.posterior(ds[["spikes"]].assign(frames=ds["frames"] * np.nan))
    with pytest.raises(DimensionError, match="modalities"):
        wb.MultimodalGPVAE(KINDS).fit(ds[["spikes"]], epochs=1)
    with pytest.raises(DimensionError, match="time"):
        model.posterior({"spikes": ds["spikes"].rename(time="t")})
    uneven = ds[["spikes", "frames"]].assign_coords(time=ds["time"].values ** 2)
    with pytest.raises(CoordinateError, match="evenly"):
        model.posterior(uneven)
    with pytest.raises(ValueError, match="feature sizes"):
        model.posterior({"spikes": ds["spikes"].isel(unit=slice(0, 5))})
    with pytest.raises(ValueError, match="likelihood"):
        wb.MultimodalGPVAE({"spikes": "gamma"}).fit(ds[["spikes"]], epochs=1)


def test_save_load_round_trip(small, tmp_path):
    ds, model = small
    model.save(tmp_path / "mm.wb")
    again = wb.load(tmp_path / "mm.wb")
    a = model.posterior(ds[["spikes", "frames"]])
    b = again.posterior(ds[["spikes", "frames"]])
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert again.hyperparameters() == model.hyperparameters()


@pytest.mark.arviz
def test_inference_data_works_with_arviz(small):
    ds, model = small
    idata = model.to_inference_data(ds[["spikes", "frames"]], draws=20)
    assert idata.posterior["latents"].dims == ("chain", "draw", "trial", "time", "latent")
    assert set(idata.log_likelihood.data_vars) == {"spikes", "frames"}
    summary = arviz_checks.summary(idata, var_names=["latents"], kind="stats")
    assert len(summary) == 12 * 30 * 3
    with pytest.raises(ValueError, match="draws"):
        model.to_inference_data(ds, draws=0)


def test_single_modality_gpvae_and_reproducibility():
    ds = wb.simulate.multimodal_trials(n_trials=8, n_bins=20, n_units=5, behaviour="keypoints")
    runs = [
        wb.GPVAE("keypoints", n_latents=2, seed=4).fit(ds, epochs=2, batch_size=4, progress=False)
        for _ in range(2)
    ]
    a, b = (run.posterior(ds) for run in runs)
    np.testing.assert_array_equal(a["latent_mean"].values, b["latent_mean"].values)
    assert list(a["latent"].values) == ["latent_0", "latent_1"]
    assert a["keypoints_mean"].dims == ("trial", "time", "keypoint", "coord")
    assert runs[0].elbo_trace == runs[1].elbo_trace


def test_state_space_prior_trains_and_its_kl_is_the_dense_one():
    from workbench.inference.pseudo_posterior import dense_pseudo_posterior
    from workbench.kernels.statespace import matern_sde as ms

    ds = wb.simulate.multimodal_trials(n_trials=6, n_bins=25, n_units=10, image_size=8, seed=5)
    model = wb.MultimodalGPVAE(KINDS, prior="statespace", seed=2)
    model.fit(ds[["spikes", "frames"]], epochs=2, batch_size=3, progress=False)
    assert len(model.elbo_trace) == 2 and np.isfinite(model.elbo_trace).all()
    post = model.posterior(ds[["spikes"]])
    assert bool(np.isfinite(post["frames_mean"]).all())
    prepared = trial_data(ds, KINDS, dtype=torch.float32)
    with torch.no_grad():
        _, (mean, var) = model._q(prepared.modalities, 25)
    # the same q by dense algebra from the same pseudo-observations
    ell = model.lengthscale_bins.detach().double()
    t = torch.arange(25, dtype=torch.float64)
    K = ms.matern_covariance(2, ell[0], torch.ones((), dtype=torch.float64), t[:, None] - t)
    lam = torch.zeros(6, 25, dtype=torch.float64)
    weighted = torch.zeros_like(lam)
    for m, arr in prepared.modalities.items():
        seen = (arr.observed.sum(-1) > 0).float()
        with torch.no_grad():
            mu_m, lam_m = model.nets[m].encode(arr.values, seen)
        lam += lam_m[:, 0].double()
        weighted += (lam_m * mu_m)[:, 0].double()
    dense = dense_pseudo_posterior(weighted / lam, lam, K)
    np.testing.assert_allclose(mean[:, 0].double(), dense.mean, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(var[:, 0].double(), dense.var, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="prior"):
        wb.MultimodalGPVAE(KINDS, prior="banded")


@pytest.mark.parametrize("prior", ["fourier", "fourier_exact", "statespace"])
def test_spikes_only_elbo_is_fully_analytic(prior):
    # exact Poisson expectation + registered KL: no Monte Carlo left, any seed gives the same
    ds = wb.simulate.multimodal_trials(n_trials=4, n_bins=20, n_units=8, image_size=8, seed=6)
    model = wb.GPVAE("spikes", "poisson", n_latents=2, prior=prior)
    model.fit(ds[["spikes"]], epochs=1, progress=False)
    assert model.elbo(ds[["spikes"]], seed=0) == model.elbo(ds[["spikes"]], seed=1)


def test_scores_per_modality(small):
    ds, model = small
    scores = model.score(ds[["spikes", "frames"]])
    assert list(scores["modality"].values) == ["spikes", "frames"]
    assert list(scores["metric"].values) == ["nll", "mse"]
    assert bool(np.isfinite(scores["all"]).all() and np.isfinite(scores["others"]).all())
    post = model.posterior(ds[["spikes", "frames"]])
    mse = float(((post["frames_mean"] - ds["frames"]) ** 2).mean())
    assert abs(float(scores["all"].sel(modality="frames")) - mse) < 1e-5
    only = model.score(ds[["frames"]])
    assert np.isnan(float(only["others"].sel(modality="frames")))


def test_bernoulli_pixels_and_the_convolutional_decoder():
    ds = wb.simulate.multimodal_trials(n_trials=4, n_bins=12, n_units=5, image_size=8, seed=7)
    binary = (ds[["frames"]] > 0.5).astype(float)
    model = wb.GPVAE("frames", "bernoulli", n_latents=2, decoder="conv")
    model.fit(binary, epochs=2, batch_size=2, progress=False)
    post = model.posterior(binary)
    assert float(post["frames_mean"].min()) >= 0 and float(post["frames_mean"].max()) <= 1
    assert np.isfinite(model.elbo_trace).all()
    with pytest.raises(ValueRangeError, match="0/1"):
        model.posterior(ds[["frames"]])
    with pytest.raises(ValueError, match="divisible by 4"):
        odd = wb.simulate.multimodal_trials(n_trials=2, n_bins=5, n_units=3, image_size=10)
        wb.GPVAE("frames", decoder="conv").fit(odd[["frames"]], epochs=1)


def test_bad_optimiser_settings_fail_before_building():
    ds = wb.simulate.multimodal_trials(n_trials=2, n_bins=6, n_units=3, image_size=8)
    model = wb.MultimodalGPVAE(KINDS)
    with pytest.raises(ValueError, match="final_lr"):
        model.fit(ds, epochs=1, final_lr=1.0)
    with pytest.raises(ValueError, match="modality_dropout"):
        model.fit(ds, epochs=1, modality_dropout=1.0)
    assert model.layout is None


def test_datetime_time_axis_sets_the_bin_width_in_seconds():
    import pandas as pd

    ds = wb.simulate.multimodal_trials(n_trials=3, n_bins=10, n_units=4, image_size=8)
    ds = ds.assign_coords(time=pd.date_range("2020", periods=10, freq="20ms"))
    model = wb.MultimodalGPVAE(KINDS, lengthscale=0.2).fit(ds, epochs=1, progress=False)
    assert model.layout["bin_width"] == pytest.approx(0.02)
    assert model.layout["lengthscale_bins"] == pytest.approx(10.0)
    assert model.posterior(ds)["time"].dtype.kind == "M"


def test_exact_fourier_q_is_the_dense_conjugate_posterior_of_the_fourier_prior():
    from workbench.inference.pseudo_posterior import dense_pseudo_posterior
    from workbench.models.gpvae_priors import make_prior

    gen = torch.Generator().manual_seed(8)
    lam = torch.rand(2, 3, 40, generator=gen, dtype=torch.float64)
    lam[0, 1, 5:20] = 0.0
    mu = torch.randn(2, 3, 40, generator=gen, dtype=torch.float64)
    ell = torch.tensor([4.0, 6.0, 9.0], dtype=torch.float64)
    prior = make_prior("fourier_exact", 6.0)
    law, (mean, var) = prior.posterior(lam, lam * mu, ell)
    site = prior.site(ell, 2, 40, lam)
    B = prior._basis(40, torch.float64).matrix
    for k in range(3):
        K = B.T @ torch.diag(site.base_dist.scale_tril[0, k].diagonal() ** 2) @ B
        dense = dense_pseudo_posterior(mu[:, k], lam[:, k], K)
        torch.testing.assert_close(mean[:, k], dense.mean, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(var[:, k], dense.var, atol=1e-9, rtol=1e-9)
        kl = torch.distributions.kl_divergence(law.base_dist, site.base_dist)[:, k]
        torch.testing.assert_close(kl, dense.kl, atol=1e-8, rtol=1e-8)
