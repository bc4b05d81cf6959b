"""SparseGPExplorer: rho and kernel sliders rebuild q and redraw; the fit button."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import workbench as wb


def _data():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(200, 2))
    y = np.sin(5 * X[:, 0]) + np.cos(3 * X[:, 1]) + 0.1 * rng.normal(size=200)
    return xr.DataArray(y, dims="site", coords={"lon": ("site", X[:, 0]), "lat": ("site", X[:, 1])})


def test_sliders_rebuild_and_redraw_and_fit_completes():
    da = _data()
    model = wb.SparseInverseCholeskyGP(rho=2.0)
    ex = model.explore(da, fit_steps=1)
    assert isinstance(ex, wb.widgets.SparseGPExplorer) and ex.figure.value[:4] == b"\x89PNG"
    before_png, before_score = ex.figure.value, ex.score.value
    ex.rho.value = 3.0
    assert model.rho == 3.0 and ex.score.value != before_score
    name = next(n for n in ex.controls if n.endswith("lengthscale"))
    ex.controls[name].value = 0.05
    assert model.hyperparameters()[name] == pytest.approx(0.05) and ex.figure.value != before_png
    ex.fit_button.click()
    assert ex.progress.value == ex.progress.max and ex.status.value == ""
    assert len(model.elbo_trace) == 1


def test_maps_need_two_dimensional_inputs():
    da = _data().assign_coords(h=("site", np.zeros(200)))
    model = wb.SparseInverseCholeskyGP(inputs=["lon", "lat", "h"])
    with pytest.raises(ValueError, match="2-D inputs"):
        model.explore(da)
