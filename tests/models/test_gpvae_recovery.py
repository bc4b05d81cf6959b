"""Latent recovery of the multi-modal GP-VAE on the paper-style simulation (short CI run).

The full-length run (240/60 trials, 300 epochs, several seeds) is
``tests/benchmarks/bench_gpvae.py``; this one trains 160 trials for 60 epochs (about 30 s)
and asserts lower bars than the benchmark's 0.95 / 0.8 (shared 0.7, neural 0.9, behaviour
0.7), each latent by its own posterior latent, and frames predicted from the spikes alone
better than the average frame.
"""

from __future__ import annotations

import workbench as wb
from workbench.metrics import affine_r2


def test_short_run_recovers_the_latents_and_predicts_frames_from_spikes():
    ds = wb.simulate.multimodal_trials(n_trials=200, n_bins=60, seed=0)
    train, test = ds.isel(trial=slice(0, 160)), ds.isel(trial=slice(160, 200))
    model = wb.MultimodalGPVAE({"spikes": "poisson", "frames": "gaussian"}, seed=0)
    model.fit(train[["spikes", "frames"]], epochs=60, progress=False)
    post = model.posterior(test[["spikes", "frames"]])
    truth = test.true_latent
    pairs = {"shared": ("shared", 0.7), "neural": ("spikes", 0.9), "behaviour": ("frames", 0.7)}
    for name, (latent, bar) in pairs.items():
        r2 = affine_r2(truth.sel(latent=name).values, post.latent_mean.sel(latent=latent).values)
        assert r2 >= bar, (name, r2)
    cross = model.posterior(test[["spikes"]]).frames_mean
    mean_frame = train.frames.mean(("trial", "time"))
    baseline = float(((mean_frame - test.frames) ** 2).mean())
    assert float(((cross - test.frames) ** 2).mean()) < 0.9 * baseline
    assert model.elbo_trace[-1] > model.elbo_trace[0]
