"""The ``da.wb`` accessor forwards to the models and gives the same results."""

from __future__ import annotations

import numpy as np
import xarray as xr

import workbench as wb


def _data() -> xr.DataArray:
    t = np.linspace(0, 10, 120)
    y = np.sin(t) + 0.1 * np.random.default_rng(0).normal(size=120)
    return xr.DataArray(y, dims="time", coords={"time": t}, attrs={"units": "mV"})


def test_smooth_equals_fitting_a_markov_gp_by_hand():
    da = _data()
    out = da.wb.smooth(steps=5)
    model = wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5), noise=0.1)
    model.fit(da, steps=5, progress=False)
    xr.testing.assert_allclose(out, model.posterior(da), rtol=1e-12)
    assert out["mean"].attrs["units"] == "mV" and out.attrs["model"] == "MarkovGP"


def test_smooth_takes_a_kernel_and_prediction_points():
    da = _data()
    kernel = wb.kernels.HidaMaternKernel(order=1, lengthscale=3.0, frequency=1.0)
    out = da.wb.smooth(kernel, steps=2, at=np.linspace(0, 12, 7))
    assert out.sizes["time"] == 7 and np.isfinite(out["mean"]).all()


def test_fit_and_posterior_forward_to_the_model():
    da = _data()
    model = wb.MarkovGP(wb.kernels.MaternKernel(nu=2.5), noise=0.1)
    assert da.wb.fit(model, steps=2, progress=False) is model
    xr.testing.assert_identical(da.wb.posterior(model), model.posterior(da))


def test_accessor_works_in_a_pipeline_on_a_selection():
    da = xr.concat([_data(), 2 * _data()], dim="unit").assign_coords(unit=["a", "b"])
    out = da.isel(unit=1).pipe(lambda x: x.wb.smooth(steps=2))
    assert "unit" in out.coords and out["unit"].item() == "b"


def test_fit_many_forwards_with_the_dataarray_as_data():
    da = xr.concat([_data(), 2 * _data()], dim="unit").assign_coords(unit=["a", "b"])

    def make():
        return wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5), noise=0.1)

    out = da.wb.fit_many(make, over="unit", fit_kwargs={"steps": 2}, progress=False)
    direct = wb.fit_many(make, da, over="unit", fit_kwargs={"steps": 2}, progress=False)
    assert out.equals(direct) and list(out.error.values) == ["", ""]
