"""LatentExplorer: pickers, kernel sliders, ELBO readout and the EM button."""

from __future__ import annotations

import numpy as np

import workbench as wb
from workbench.likelihoods import Poisson


def _setup():
    ds = wb.simulate.latent_spikes(n_units=6, n_latents=2, n_trials=3, n_bins=80, seed=0)
    model = wb.LatentTrajectoryGP(2, likelihood=Poisson(bin_width=0.01), cvi_steps=3)
    return ds, model


def test_latent_explorer_renders_pickers_sliders_and_elbo():
    ds, model = _setup()
    ex = model.explore(ds.spikes, fit_steps=2)
    assert isinstance(ex, wb.widgets.LatentExplorer)
    assert set(ex.controls) == {"latents.0.kernel.lengthscale", "latents.1.kernel.lengthscale"}
    assert ex.figure.value[:4] == b"\x89PNG"
    assert "ELBO" in ex.score.value
    before_png, before_score = ex.figure.value, ex.score.value
    ex.trial.value = 2  # redraw only: same ELBO, other figure
    assert ex.figure.value != before_png and ex.score.value == before_score
    ex.latent.value = 1
    ex.controls["latents.0.kernel.lengthscale"].value = 0.5
    assert model.hyperparameters()["latents.0.kernel.lengthscale"] == 0.5
    assert ex.score.value != before_score


def test_latent_explorer_fit_button_runs_em_and_completes_progress():
    ds, model = _setup()
    ex = model.explore(ds.spikes, fit_steps=2)
    ex.fit_button.click()
    assert ex.progress.value == ex.progress.max == 2
    assert len(model.fit_elbo) == 2 and np.isfinite(model.fit_elbo).all()
    assert f"{model.posterior().attrs['elbo']:.3f}" in ex.score.value
    assert ex.status.value == ""
