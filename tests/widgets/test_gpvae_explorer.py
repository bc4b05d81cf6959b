"""GPVAEExplorer: scrubbing, latent traversal, sliders reflected on the model, fit button."""

from __future__ import annotations

import workbench as wb


def test_gpvae_explorer_scrubs_decodes_and_fits():
    ds = wb.simulate.multimodal_trials(n_trials=6, n_bins=20, n_units=10, image_size=8, seed=2)
    data = ds[["spikes", "frames"]]
    model = wb.MultimodalGPVAE({"spikes": "poisson", "frames": "gaussian"})
    ex = model.explore(data, fit_steps=2)
    assert isinstance(ex, wb.widgets.GPVAEExplorer)
    assert ex.figure.value[:4] == b"\x89PNG" and "ELBO per trial" in ex.score.value
    first = ex.figure.value
    ex.time.value = 7
    assert ex.figure.value != first
    scrubbed = ex.figure.value
    ex.decode.value = True
    ex.latents["shared"].value = 2.0
    assert ex.decoded().shape == (8, 8) and ex.figure.value != scrubbed
    assert set(ex.controls) == {
        "lengthscale.shared",
        "lengthscale.spikes",
        "lengthscale.frames",
        "nets.frames.noise",
    }
    ex.decode.value = False
    figure = ex.figure.value
    ex.controls["lengthscale.shared"].value = 0.3  # seconds: q and the figure change
    assert abs(model.hyperparameters()["lengthscale.shared"] - 0.3) < 1e-6
    assert ex.figure.value != figure
    score = ex.score.value
    ex.controls["nets.frames.noise"].value = 0.05
    assert abs(model.hyperparameters()["nets.frames.noise"] - 0.05) < 1e-6
    assert ex.score.value != score  # the ELBO under the new noise
    epochs = len(model.elbo_trace)
    ex.fit_button.click()
    assert ex.progress.value == ex.progress.max == 2
    assert len(model.elbo_trace) == epochs + 2 and ex.status.value == ""
    assert f"{model.elbo(data):.2f}" in ex.score.value
