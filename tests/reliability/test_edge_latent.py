"""Property-based tests at the xarray edge of LatentTrajectoryGP.

Each example is a spike-count ``DataArray`` with dims (trial, time, unit) in a random order
(trial optional), with random benign variations (float, integer, datetime or absent time
coordinates, regular or irregular bins, small and huge counts, NaN patterns including ragged
trials, float32/integer/bool values, joint or mean-field E-step) and at most one defect. The
property: with no defect the model fits and ``posterior()`` carries the input's coordinates, every
value finite inside each trial's span (NaN only after a trial's last or before its first observed
bin, as documented); with a defect it raises the ``workbench.errors`` type listed in ``DEFECTS``,
whose message names the offending dim or variable. Any other exception fails the test.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from edge_checks import (
    DTYPE_DEFECTS,
    TIME_DEFECTS,
    Defects,
    assert_same_coords,
    break_time,
    check_defect,
    run_benign,
    time_kind,
    with_bad_dtype,
)
from edge_checks import DefectCase as Case
from hypothesis import example, given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.errors import (
    DimensionError,
    DTypeError,
    EmptyDataError,
    ShapeMismatchError,
    ValueRangeError,
    WorkbenchWarning,
)

#: defect -> (error it must raise, what its message must name: a dim, or "label" for the variable)
DEFECTS: Defects = {
    "negative": (ValueRangeError, "label"),
    "non_integer": (ValueRangeError, "label"),
    "inf": (ValueRangeError, "label"),
    **TIME_DEFECTS,
    "whole_series_nan": (EmptyDataError, "'unit'"),
    **DTYPE_DEFECTS,
    "extra_dim": (DimensionError, "'session'"),
    "no_unit_dim": (DimensionError, "'unit'"),
    "no_time_dim": (DimensionError, "'time'"),
    "empty_time": (EmptyDataError, "'time'"),
    "empty_unit": (EmptyDataError, "'unit'"),
    "empty_trial": (EmptyDataError, "'trial'"),
}
TRIALED = ("empty_trial",)  # defects that need a trial dim


def _time_coord(draw, kind: str, T: int) -> np.ndarray | None:
    regular = draw(st.booleans())
    gaps = np.ones(T)
    if not regular:
        gaps = np.asarray(draw(st.lists(st.floats(0.5, 2.0), min_size=T, max_size=T)))
    if kind == "datetime":
        ms = np.cumsum(np.round(gaps * 10)).astype(np.int64)
        return np.datetime64("2024-05-06T12:00", "ns") + ms.astype("timedelta64[ms]")
    if kind == "float":
        width = draw(st.sampled_from([1e-3, 0.01, 1.0]))
        offset = draw(st.sampled_from([0.0, -2.5, 1.7e9]))
        return offset + width * np.cumsum(gaps)
    if kind == "int":
        return np.arange(T)
    return None


def _counts(draw, R: int, T: int, N: int) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    rate = draw(st.sampled_from([0.0, 0.2, 3.0, 1e6, 1e12]))
    counts = rng.poisson(rate, size=(R, T, N)).astype(np.float64) if rate < 1e9 else None
    if counts is None:  # huge counts (exact in float64)
        counts = np.round(rate * rng.uniform(0.5, 1.5, size=(R, T, N)))
    return counts


def _nan_pattern(draw, counts: np.ndarray) -> np.ndarray:
    """NaN: none, scattered, a ragged trial (late start / early end) or a series seen once."""
    R, T, N = counts.shape
    out = counts.copy()
    pattern = draw(st.sampled_from(["none", "scattered", "ragged", "all_but_one"]))
    if pattern == "scattered":
        hide = np.asarray(draw(st.lists(st.booleans(), min_size=out.size, max_size=out.size)))
        hide = hide.reshape(out.shape)
        hide[:, draw(st.integers(0, T - 1)), :] = False  # every series keeps a value
        out[hide] = np.nan
    elif pattern == "ragged":
        trial, first = draw(st.integers(0, R - 1)), draw(st.integers(0, T - 1))
        last = draw(st.integers(first, T - 1))
        out[trial, :first] = np.nan
        out[trial, last + 1 :] = np.nan
    elif pattern == "all_but_one":
        trial, unit, keep = (draw(st.integers(0, n - 1)) for n in (R, N, T))
        out[trial, np.arange(T) != keep, unit] = np.nan
    return out


@st.composite
def spike_arrays(draw, defects: list[str | None]) -> Case:
    """Spike counts (trial, time, unit), dims shuffled, with at most one defect."""
    defect = draw(st.sampled_from(defects))
    R, T, N = draw(st.integers(1, 3)), draw(st.integers(2, 9)), draw(st.integers(1, 4))
    time = _time_coord(draw, time_kind(draw, defect in TIME_DEFECTS), T)
    values = _nan_pattern(draw, _counts(draw, R, T, N))
    coords = {"trial": np.arange(R) + 10, "unit": [f"n{i}" for i in range(N)]}
    if time is not None:
        coords["time"] = time
    name = draw(st.sampled_from([None, "spikes"]))
    da = xr.DataArray(values, dims=("trial", "time", "unit"), coords=coords, name=name)
    case = Case(da, defect)
    if defect not in TRIALED and R == 1 and draw(st.booleans()):
        case.da = case.da.isel(trial=0, drop=True)
    dtype = draw(st.sampled_from(["float64", "float64", "float32", "int64", "uint8", "bool"]))
    finite = np.isfinite(values).all()
    if dtype == "float32" and np.nanmax(values) < 2**24:  # exact counts in float32
        case.da, case.float32 = case.da.astype(np.float32), True
    elif dtype in ("int64", "uint8") and finite and values.max() < np.iinfo(dtype).max:
        case.da = case.da.astype(dtype)
    elif dtype == "bool" and finite:
        case.da = case.da > 0
    _apply_defect(draw, case)
    order = draw(st.permutations(case.da.dims))
    case.da = case.da.transpose(*order)
    return case


def _series(draw, da: xr.DataArray) -> dict:
    """One (trial, unit) series, as an indexer."""
    where = {"unit": draw(st.integers(0, da.sizes["unit"] - 1))}
    if "trial" in da.dims:
        where["trial"] = draw(st.integers(0, da.sizes["trial"] - 1))
    return where


def _apply_defect(draw, case: Case) -> None:
    da, defect = case.da, case.defect
    T = da.sizes["time"]
    if defect in ("negative", "non_integer", "inf"):
        da = da.astype(np.float64)
        bad = {"negative": -1.0, "non_integer": 0.5, "inf": np.inf}[defect]
        da[{**_series(draw, da), "time": draw(st.integers(0, T - 1))}] = bad
    elif defect in TIME_DEFECTS:
        da = da.astype(np.float64).fillna(0.0)  # every bin observed: the error is the order
        da = da.assign_coords(time=break_time(draw, da["time"].values, defect))
    elif defect == "whole_series_nan":
        da = da.astype(np.float64)
        da[_series(draw, da)] = np.nan
    elif defect in DTYPE_DEFECTS:
        da = with_bad_dtype(da, defect, "ms")
    elif defect == "extra_dim":
        da = da.expand_dims(session=2)
    elif defect == "no_unit_dim":
        da = da.rename(unit="neuron")
    elif defect == "no_time_dim":
        da = da.rename(time="bin")
    elif defect in ("empty_time", "empty_unit", "empty_trial"):
        da = da.isel({defect.removeprefix("empty_"): slice(0, 0)})
    case.da = da


def _model(estep: str, likelihood: str = "poisson") -> wb.LatentTrajectoryGP:
    return wb.LatentTrajectoryGP(1, likelihood=likelihood, cvi_steps=2, estep=estep)


def _fit(model: wb.LatentTrajectoryGP, da: xr.DataArray) -> wb.LatentTrajectoryGP:
    return model.fit(da, steps=1, m_steps=2, progress=False)


def _span_mask(da: xr.DataArray) -> np.ndarray:
    """(trial, time) True inside each trial's span (first to last bin with any observed unit)."""
    values = da.transpose(*[d for d in ("trial", "time", "unit") if d in da.dims]).values
    values = values.astype(np.float64)
    seen = np.isfinite(values).any(-1)  # (trial?, time)
    seen = seen if seen.ndim == 2 else seen[None]
    grid = np.arange(seen.shape[1])
    first = np.where(seen, grid, seen.shape[1]).min(1, keepdims=True)
    last = np.where(seen, grid, -1).max(1, keepdims=True)
    return (grid >= first) & (grid <= last)


def _check_posterior(ds: xr.Dataset, da: xr.DataArray) -> None:
    lead = ("trial",) if "trial" in da.dims else ()
    assert ds["latent_mean"].dims == (*lead, "time", "latent")
    assert ds["latent_variance"].dims == (*lead, "time", "latent")
    assert ds["rate"].dims == (*lead, "time", "unit")
    assert_same_coords(ds, da, da.dims)
    inside = _span_mask(da)
    for name in ("latent_mean", "latent_variance", "rate"):
        values = ds[name].values.reshape((*inside.shape, -1))
        assert np.isfinite(values[inside]).all(), f"{name} non-finite inside a trial span"
        assert np.isnan(values[~inside]).all(), f"{name} not NaN outside a trial span"
    assert (ds["latent_variance"].fillna(0) >= 0).all() and (ds["rate"].fillna(0) >= 0).all()
    if "elbo_trace" in ds:
        assert np.isfinite(ds["elbo_trace"].values).all()


@settings(max_examples=200)
@given(case=spike_arrays([None]), estep=st.sampled_from(["joint", "mean_field"]))
@example(  # ragged trials whose spans do not overlap, one bin each
    case=Case(
        xr.DataArray(
            np.array([[[1.0], [np.nan]], [[np.nan], [0.0]]]), dims=("trial", "time", "unit")
        )
    ),
    estep="joint",
)
def test_latent_trajectory_valid_spikes(case, estep):
    model = run_benign(case, lambda: _fit(_model(estep), case.da))
    with warnings.catch_warnings():
        warnings.simplefilter("error", WorkbenchWarning)  # the fitted spikes warn only once
        ds = model.posterior()
    _check_posterior(ds, case.da)


@settings(max_examples=200)
@given(case=spike_arrays(list(DEFECTS)), estep=st.sampled_from(["joint", "mean_field"]))
def test_latent_trajectory_bad_spikes(case, estep):
    check_defect(case, lambda: _fit(_model(estep), case.da), DEFECTS, quiet=True)


@st.composite
def real_arrays(draw) -> xr.DataArray:
    """Real-valued (trial, time, unit) data: negative, tiny, huge or constant."""
    R, T, N = draw(st.integers(1, 2)), draw(st.integers(2, 8)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([1.0, 1e-12, 1e12]))
    offset = draw(st.sampled_from([0.0, -5.0, 5.0])) * scale
    values = offset + scale * rng.normal(size=(R, T, N))
    if draw(st.booleans()):
        values = np.full_like(values, offset + scale)
    da = xr.DataArray(values, dims=("trial", "time", "unit"), coords={"time": np.arange(T) * 0.1})
    return da.transpose(*draw(st.permutations(da.dims)))


@settings(max_examples=60)
@given(da=real_arrays(), estep=st.sampled_from(["joint", "mean_field"]))
@example(  # regression: negative values -> log of a negative in the PCA start, LinAlgError
    da=xr.DataArray(-np.arange(12.0).reshape(2, 3, 2), dims=("trial", "time", "unit")),
    estep="joint",
)
def test_latent_trajectory_gaussian_real_values(da, estep):
    model = _fit(_model(estep, "gaussian"), da)
    ds = model.posterior()
    for name in ("latent_mean", "latent_variance"):
        assert np.isfinite(ds[name].values).all(), name
    np.testing.assert_array_equal(ds["time"].values, da["time"].values)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(3)
    spikes = xr.DataArray(
        rng.poisson(2.0, size=(2, 12, 3)).astype(float),
        dims=("trial", "time", "unit"),
        coords={"time": np.arange(12) * 0.01, "unit": ["a", "b", "c"]},
    )
    return spikes, _fit(_model("joint"), spikes)


@settings(max_examples=40)
@given(data=st.data())
def test_posterior_on_new_spikes(fitted, data):
    """New spikes: other trials and times work; other units or time kinds raise."""
    spikes, model = fitted
    change = data.draw(st.sampled_from([None, "trials", "times", "units", "datetime", "order"]))
    new = spikes
    if change == "trials":
        new = spikes.isel(trial=[1, 0, 1]).assign_coords(trial=[5, 6, 7])
    elif change == "times":
        stop = data.draw(st.integers(2, 12))
        new = spikes.isel(time=slice(0, stop)).assign_coords(time=np.arange(stop) * 0.5 + 3)
    elif change == "units":
        new = spikes.isel(unit=slice(0, data.draw(st.integers(1, 2))))
    elif change == "datetime":
        dates = np.datetime64("2020-01-01", "ns") + np.arange(12).astype("timedelta64[ms]")
        new = spikes.assign_coords(time=dates)
    elif change == "order":
        new = spikes.transpose(*data.draw(st.permutations(spikes.dims)))
    if change == "units":
        with pytest.raises(ShapeMismatchError, match="'unit'"):
            model.posterior(new)
        return
    if change == "datetime":
        with pytest.raises(DTypeError, match="'time'"):
            model.posterior(new)
        return
    _check_posterior(model.posterior(new), new)


def test_fewer_units_than_fitted_is_a_shape_mismatch():
    """Regression: posterior(new spikes) with another unit count raised a torch RuntimeError."""
    spikes = xr.DataArray(np.ones((1, 5, 3)), dims=("trial", "time", "unit"))
    model = _fit(_model("joint"), spikes)
    with pytest.raises(ShapeMismatchError, match="expected 3 entries along dim 'unit'"):
        model.posterior(spikes.isel(unit=[0]))
