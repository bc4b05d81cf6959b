"""Magma and MagmaClust at any scale of the data: fitting ``s * y`` gives ``s`` times the fit
of ``y`` (means times s, variances times s², the same memberships), from 1e-12 to 1e12."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import workbench as wb

SCALES = (1e-12, 1e-6, 1e6, 1e12)


def tasks(clusters: bool) -> xr.DataArray:
    """Five (two groups of) noisy sine tasks, one with its end missing."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 10, 25)
    phases = (0.0, 0.3, 0.6, 2.5, 2.8) if clusters else (0.0, 0.5, 1.0)
    y = np.stack([np.sin(t + p) for p in phases]) + 0.1 * rng.standard_normal((len(phases), 25))
    y[1, 15:] = np.nan
    names = [f"t{i}" for i in range(len(phases))]
    return xr.DataArray(y, dims=("task", "time"), coords={"task": names, "time": t})


def fit_predict(model: wb.MagmaClust, da: xr.DataArray) -> tuple[xr.Dataset, xr.DataArray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(da, progress=False)
    new = da.isel(task=1)
    return model.predict(new, at=np.linspace(0, 12, 15)), model.memberships()


def models() -> dict[str, tuple]:
    return {
        "Magma": (lambda: wb.Magma(hypothesis="H00", max_iter=6), tasks(False)),
        "MagmaClust": (lambda: wb.MagmaClust(2, max_iter=6), tasks(True)),
    }


@pytest.fixture(scope="module")
def unit_fits() -> dict[str, tuple]:
    return {name: fit_predict(make(), da) for name, (make, da) in models().items()}


@pytest.mark.parametrize("name", ["Magma", "MagmaClust"])
@pytest.mark.parametrize("scale", SCALES)
def test_fit_follows_scale(unit_fits, name: str, scale: float) -> None:
    make, da = models()[name]
    model = make()
    pred, tau = fit_predict(model, da * scale)
    ref, ref_tau = unit_fits[name]
    # EM amplifies the round-off of s * y / s: measured at most 1.1e-6 relative (x86, float64)
    rtol = 1e-5
    np.testing.assert_allclose(pred["mean"] / scale, ref["mean"], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(pred["variance"] / scale**2, ref["variance"], rtol=rtol)
    np.testing.assert_allclose(pred["lower"] / scale, ref["lower"], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(pred["membership"], ref["membership"], atol=rtol)
    np.testing.assert_allclose(tau, ref_tau, atol=rtol)
    unit = make()
    fit_predict(unit, da)
    values, ref_values = model.hyperparameters(), unit.hyperparameters()
    for key, value in values.items():
        power = 2 if key.endswith(("noise", "outputscale")) else 0
        np.testing.assert_allclose(np.divide(value, scale**power), ref_values[key], rtol=rtol)
    # reported ELBOs in data units: the log-Jacobian of y -> s y
    n = int(da.notnull().sum())
    jacobian = n * np.log(scale)
    np.testing.assert_allclose(model.fit_elbo[-1] + jacobian, unit.fit_elbo[-1], rtol=rtol)
    np.testing.assert_allclose(model.elbo() + jacobian, unit.elbo(), rtol=rtol)


@pytest.mark.parametrize("scale", [1e-12, 1e12])
def test_saved_model_predicts_in_data_units(tmp_path, scale: float) -> None:
    make, da = models()["MagmaClust"]
    model = make()
    pred, _ = fit_predict(model, da * scale)
    path = tmp_path / "magma.wb"
    model.save(path)
    loaded = wb.load(path)
    again = loaded.predict((da * scale).isel(task=1), at=np.linspace(0, 12, 15))
    np.testing.assert_allclose(again["mean"], pred["mean"], rtol=1e-10)
    np.testing.assert_allclose(again["variance"], pred["variance"], rtol=1e-10)
