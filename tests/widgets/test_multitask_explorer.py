"""MultitaskExplorer: hiding a window of one task, sliders, fit button."""

from __future__ import annotations

import numpy as np
import xarray as xr

import workbench as wb


def _data():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 10, 50)
    g = np.sin(1.3 * x)
    values = np.stack([g, 2 * g + 1, -g]) + 0.05 * rng.normal(size=(3, 50))
    return xr.DataArray(values, dims=("task", "time"), coords={"task": ["a", "b", "c"], "time": x})


def test_hiding_a_window_scores_the_transfer_and_redraws():
    da = _data()
    model = wb.MultitaskGP()
    ex = model.explore(da, fit_steps=3)
    assert isinstance(ex, wb.widgets.MultitaskExplorer) and model.kernel is not None
    assert ex.figure.value[:4] == b"\x89PNG" and "hidden" not in ex.score.value
    before = ex.figure.value
    ex.hide_task.value = "c"
    ex.window.index = (20, 35)
    visible, hidden = ex.split()
    assert int(np.isfinite(hidden).sum()) == 16 and int(np.isnan(visible.sel(task="c")).sum()) == 16
    assert "hidden-point MSE" in ex.score.value and ex.figure.value != before
    mse = float(ex.score.value.split("MSE</b>: ")[1].split(" ")[0])
    assert mse < 0.05  # the other tasks carry the hidden window
    name = next(n for n in ex.controls if n.endswith("lengthscale"))
    ex.controls[name].value = 0.05  # a tiny lengthscale: no transfer into the window
    worse = float(ex.score.value.split("MSE</b>: ")[1].split(" ")[0])
    assert worse > mse
    ex.fit_button.click()
    assert ex.progress.value == ex.progress.max and ex.status.value == ""
    assert model.hyperparameters()[name] > 0.05
