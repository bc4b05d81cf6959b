"""Every explorer: one layout (controls left, figure right), and what the user chose in it is
on the model, so ``model.save()`` after exploring keeps it."""

from __future__ import annotations

import math

import gpytorch
import numpy as np
import pytest
import xarray as xr

import workbench as wb
from workbench.likelihoods import Poisson


def _series() -> xr.DataArray:
    x = np.linspace(0, 6, 30)
    return xr.DataArray(np.sin(x), dims="time", coords={"time": x}, attrs={"units": "mV"})


def _exact():
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
    return wb.ExactGP(kernel, noise=0.05), _series(), {}


def _markov():
    return wb.MarkovGP(wb.kernels.MaternKernel(), noise=0.05), _series(), {}


def _latent():
    ds = wb.simulate.latent_spikes(n_units=4, n_latents=1, n_trials=2, n_bins=40, seed=0)
    return wb.LatentTrajectoryGP(1, likelihood=Poisson(bin_width=0.01), cvi_steps=2), ds.spikes, {}


def _multitask():
    x = np.linspace(0, 6, 20)
    values = np.stack([np.sin(x), np.cos(x)])
    da = xr.DataArray(values, dims=("task", "time"), coords={"task": ["a", "b"], "time": x})
    return wb.MultitaskGP(), da, {"fit_steps": 2}


def _magma():
    ds = wb.simulate.magma_clusters(n_tasks=6, n_points=8, n_clusters=2, seed=0)
    return wb.MagmaClust(2, prior_mean="constant", max_iter=3), ds.y, {}


def _sparse():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(80, 2))
    da = xr.DataArray(
        np.sin(4 * X[:, 0]),
        dims="site",
        coords={"lon": ("site", X[:, 0]), "lat": ("site", X[:, 1])},
    )
    return wb.SparseInverseCholeskyGP(rho=2.0), da, {}


def _gpvae():
    ds = wb.simulate.multimodal_trials(n_trials=4, n_bins=16, n_units=6, image_size=8, seed=1)
    return (
        wb.MultimodalGPVAE({"spikes": "poisson", "frames": "gaussian"}),
        ds[["spikes", "frames"]],
        {},
    )


CASES = [_exact, _markov, _latent, _multitask, _magma, _sparse, _gpvae]


@pytest.mark.parametrize("make", CASES, ids=lambda f: f.__name__.strip("_"))
def test_explorer_layout_and_saved_choice(make, tmp_path):
    model, data, kwargs = make()
    ex = model.explore(data, **kwargs)
    left, right = ex.children
    assert "wb-controls" in left._dom_classes and ex.figure in right.children
    assert ex.fit_button in left.children and ex.status in left.children
    assert ex.figure.value[:4] == b"\x89PNG" and ex.status.value == ""

    name, control = next(iter(ex.controls.items()))
    before, chosen = control.value, _inside(control)
    assert not math.isclose(chosen, before, rel_tol=1e-3)
    control.value = chosen
    assert ex.status.value == "", ex.status.value
    model = ex.model  # MagmaExplorer may replace the model on fit; not here
    model.save(tmp_path / "explored.wbm")
    loaded = wb.load(tmp_path / "explored.wbm")
    assert loaded.hyperparameters()[name] == pytest.approx(control.value, rel=1e-5)


def _inside(control) -> float:
    """A value well inside the slider's range and away from the current one."""
    if hasattr(control, "base"):  # log slider
        return float(control.base ** (0.3 * control.min + 0.7 * control.max))
    return float(0.3 * control.min + 0.7 * control.max)
