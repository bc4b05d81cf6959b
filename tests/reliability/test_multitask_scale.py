"""MultitaskGP on data far from unit scale: fitting s·y gives s times the fit of y.

Before the fix the absolute noise floor (1e-8) swamped data at 1e-12 (posterior mean off by
156, sd 3e5 in units of s) and the optimiser saw a differently scaled problem at 1e-6, 1e6
and 1e12 (error 1.15 and 0.51 against 0.13 at s = 1).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb

SCALES = (1e-12, 1e-6, 1e6, 1e12)
KINDS = {"lmc": {"n_latents": 2}, "interaction": {"n_latents": 2, "interaction": True}}
# steps: past 3 the interaction fit drives task variances towards 0 (1e-115), where a change of
# the data by one ulp (y * (1 + 2**-52) at s = 1) already moves its posterior mean by 6e-4
STEPS = {"lmc": 10, "interaction": 3}


def _data() -> xr.DataArray:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 10, 20)
    y = np.stack([np.sin(t + p) for p in (0.0, 0.5, 1.0)]) + 0.1 * rng.standard_normal((3, 20))
    y[1, 14:] = np.nan
    return xr.DataArray(y, dims=("task", "time"), coords={"task": ["a", "b", "c"], "time": t})


def _fit(kind: str, da: xr.DataArray) -> wb.MultitaskGP:
    with torch.random.fork_rng(devices=[]):
        return wb.MultitaskGP(**KINDS[kind]).fit(da, steps=STEPS[kind], progress=False)


@pytest.fixture(scope="module", params=sorted(KINDS))
def reference(request: pytest.FixtureRequest) -> tuple[str, wb.MultitaskGP, xr.Dataset]:
    model = _fit(request.param, _data())
    return request.param, model, model.posterior(_data())


@pytest.mark.parametrize("scale", SCALES)
def test_fit_is_equivariant_to_the_data_scale(reference, scale: float) -> None:
    kind, ref_model, ref = reference
    da = _data() * scale
    model = _fit(kind, da)
    out = model.posterior(da)
    np.testing.assert_allclose(out["mean"] / scale, ref["mean"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(out["variance"] / scale**2, ref["variance"], rtol=1e-6)
    np.testing.assert_allclose(model.noise.detach() / scale**2, ref_model.noise.detach(), rtol=1e-6)
    n = int(da.notnull().sum())
    lml, ref_lml = model.log_marginal_likelihood(da), ref_model.log_marginal_likelihood(_data())
    np.testing.assert_allclose(lml, ref_lml - n * np.log(scale), rtol=1e-9)
    losses = np.asarray(model.fit_losses) - np.log(scale)  # per value, in data units
    np.testing.assert_allclose(losses, ref_model.fit_losses, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("scale", [1e-12, 1e12])
def test_noise_floor_follows_the_data_scale(scale: float) -> None:
    """The floor (a saved float32 buffer) is 1e-8 in units of s^2, so it never swamps tiny
    data."""
    model = _fit("lmc", _data() * scale)
    floor = float(model.raw_noise_constraint.lower_bound)
    assert floor == pytest.approx(1e-8 * scale**2, rel=1e-6)
    assert "raw_noise_constraint.lower_bound" in model.state_dict()


def test_unit_scale_data_keep_the_floor() -> None:
    model = _fit("lmc", _data())
    assert float(model.raw_noise_constraint.lower_bound) == pytest.approx(1e-8, rel=1e-7)
