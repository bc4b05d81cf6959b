"""Property-based tests at the xarray edge of MultitaskGP, Magma and MagmaClust.

Each example is a ``DataArray(task, time)`` with random benign variations (dim order, float,
integer, datetime or absent time coordinates, irregular spacing, large offsets, tiny and huge
magnitudes, NaN patterns, float32/int/bool values) and at most one defect. The property: with no
defect the model fits and its outputs carry the input's dims and coordinates, with every value
finite; with a defect it raises the ``workbench.errors`` type listed in ``DEFECTS``, whose message
names the offending dim or variable. Any other exception fails the test.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
import xarray as xr
from edge_checks import (
    DTYPE_DEFECTS,
    TIME_DEFECTS,
    DefectCase,
    Defects,
    assert_same_coords,
    break_time,
    check_defect,
    run_benign,
    time_kind,
    with_bad_dtype,
)
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
    **TIME_DEFECTS,
    "whole_task_nan": (EmptyDataError, "'time'"),
    "inf": (ValueRangeError, "label"),
    **DTYPE_DEFECTS,
    "extra_dim": (DimensionError, "'replicate'"),
    "no_time_dim": (DimensionError, "'time'"),
    "empty_time": (EmptyDataError, "'time'"),
    "empty_task": (EmptyDataError, "'task'"),
}
MAGNITUDES = (1.0, 1e-12, 1e12)


@dataclass
class Case(DefectCase):
    """A generated input, what the edge must do with it, and the all-NaN task to name."""

    nan_task: str | None = None  # name of the all-NaN task, which the message must name
    notes: dict = field(default_factory=dict)


def _time_coord(draw, kind: str, T: int) -> np.ndarray | None:
    gaps = np.asarray(draw(st.lists(st.floats(0.05, 5.0), min_size=T, max_size=T)))
    if kind == "datetime":
        hours = np.cumsum(np.maximum(np.round(gaps * 24), 1)).astype(np.int64)
        return np.datetime64("2001-03-04", "ns") + hours.astype("timedelta64[h]")
    if kind == "float":
        unit = draw(st.sampled_from([1e-6, 1.0, 1e6]))
        offset = draw(st.sampled_from([0.0, -50.0, 1.6e9]))
        return offset + unit * np.cumsum(gaps)
    if kind == "int":
        return np.arange(T) * draw(st.integers(1, 3))
    return None


def _values(draw, M: int, T: int) -> np.ndarray:
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from(MAGNITUDES))
    offset = draw(st.sampled_from([0.0, 0.0, 3.0])) * scale
    shape = draw(st.sampled_from(["noise", "sine", "constant"]))
    if shape == "constant":
        return np.full((M, T), offset + scale)
    t = np.linspace(0, 3, T)
    base = np.sin(t)[None, :] if shape == "sine" else 0.0
    return offset + scale * (base + rng.normal(size=(M, T)))


def _nan_pattern(draw, values: np.ndarray) -> np.ndarray:
    M, T = values.shape
    pattern = draw(st.sampled_from(["none", "scattered", "all_but_one"]))
    out = values.copy()
    if pattern == "scattered":
        hide = np.asarray(draw(st.lists(st.booleans(), min_size=M * T, max_size=M * T)))
        hide = hide.reshape(M, T)
        hide[np.arange(M), draw(st.integers(0, T - 1))] = False  # every task keeps a value
        out[hide] = np.nan
    elif pattern == "all_but_one":
        task, keep = draw(st.integers(0, M - 1)), draw(st.integers(0, T - 1))
        out[task, np.arange(T) != keep] = np.nan
    return out


@st.composite
def task_arrays(draw, defects: list[str | None], min_tasks: int = 1) -> Case:
    """A ``DataArray(task, time)`` with benign variations and at most one defect."""
    defect = draw(st.sampled_from(defects))
    M, T = draw(st.integers(min_tasks, 4)), draw(st.integers(2, 6))
    time = _time_coord(draw, time_kind(draw, defect in TIME_DEFECTS), T)
    values = _nan_pattern(draw, _values(draw, M, T))
    task_kind = draw(st.sampled_from(["str", "int", "none"]))
    coords: dict = {}
    if task_kind != "none":
        coords["task"] = [f"s{i}" for i in range(M)] if task_kind == "str" else np.arange(M) * 7
    if time is not None:
        coords["time"] = time
    name = draw(st.sampled_from([None, "signal"]))
    case = Case(xr.DataArray(values, dims=("task", "time"), coords=coords, name=name), defect)
    dtype = draw(st.sampled_from(["float64", "float64", "float32", "int", "bool"]))
    if dtype == "int" and np.isfinite(values).all():
        case.da = case.da.copy(data=np.round(values).astype(np.int64))
    elif dtype == "bool" and np.isfinite(values).all():
        case.da = case.da.copy(data=values > np.median(values))
    elif dtype == "float32":
        case.da = case.da.astype(np.float32)
        case.float32 = True
    _apply_defect(draw, case)
    if draw(st.booleans()):
        case.da = case.da.transpose(*case.da.dims[::-1])
    return case


def _apply_defect(draw, case: Case) -> None:
    da, defect = case.da, case.defect
    M = da.sizes["task"]
    if defect in TIME_DEFECTS:
        # observe every time: Magma drops unobserved times (coordinates included) by design
        values = da.values.copy()
        values[0, np.isnan(values).all(axis=0)] = 0.5
        da = da.copy(data=values)
        da = da.assign_coords(time=break_time(draw, da["time"].values, defect))
    elif defect == "whole_task_nan":
        task = draw(st.integers(0, M - 1))
        values = da.values.astype(np.float64)
        values[task] = np.nan
        da = da.copy(data=values)
        name = da["task"].values[task] if "task" in da.coords else task
        case.nan_task = repr(name.item() if hasattr(name, "item") else name)
    elif defect == "inf":
        values = da.values.astype(np.float64)
        values.flat[draw(st.integers(0, values.size - 1))] = draw(
            st.sampled_from([np.inf, -np.inf])
        )
        da = da.copy(data=values)
    elif defect == "complex":
        da = da.copy(data=da.values.astype(np.complex128) + 1j)
    elif defect in DTYPE_DEFECTS:  # string, object, timedelta
        da = with_bad_dtype(da, defect)
    elif defect == "extra_dim":
        da = da.expand_dims(replicate=2, axis=draw(st.integers(0, 2)))
    elif defect == "no_time_dim":
        da = da.rename(time="t")
    elif defect == "empty_time":
        da = da.isel(time=slice(0, 0))
    elif defect == "empty_task":
        da = da.isel(task=slice(0, 0))
    case.da = da


def _check_raises(case: Case, call) -> None:
    """The call raises the defect's error, naming what is wrong."""
    also = () if case.nan_task is None else (case.nan_task,)
    check_defect(case, call, DEFECTS, *also, quiet=True)


def _assert_finite(ds: xr.Dataset) -> None:
    for name, var in ds.data_vars.items():
        assert np.isfinite(var.values).all(), f"{name} has non-finite values"


def _on_data_scale(mean: xr.DataArray, da: xr.DataArray) -> bool:
    """The posterior mean stays on the data's scale: within 10 times the largest observed value,
    up to the resolution of the noise floor (variance 1e-8, so sd 1e-4) of the models."""
    largest = float(np.nanmax(np.abs(da.values.astype(np.float64))))
    return float(np.abs(mean).max()) <= 10 * largest + 1e-3


# -- MultitaskGP ---------------------------------------------------------------------------------
MULTITASK_CONFIGS = [{}, {"n_latents": 2}, {"inference": "sparse", "n_inducing": 3}]


@settings(max_examples=120)
@given(case=task_arrays([None]), config=st.sampled_from(MULTITASK_CONFIGS))
@example(  # regression: constant values started the noise at its floor -> raw noise NaN
    case=Case(xr.DataArray(np.ones((3, 6)), dims=("task", "time"))), config={}
)
@example(  # regression: tiny values (1e-12): same NaN noise start, LinAlgError in eigh
    case=Case(xr.DataArray(1e-12 * np.arange(12.0).reshape(3, 4) ** 2, dims=("task", "time"))),
    config={},
)
@example(  # regression: bool values (one task all False): constant task, NaN noise start
    case=Case(xr.DataArray(np.arange(8).reshape(2, 4) > 3, dims=("task", "time"))), config={}
)
def test_multitask_gp_valid_inputs(case, config):
    model = wb.MultitaskGP(**config)
    ds = run_benign(case, lambda: model.fit(case.da, steps=1, progress=False).posterior(case.da))
    assert isinstance(ds, xr.Dataset)
    assert set(ds.data_vars) == {"mean", "variance", "lower", "upper"}
    for var in ds.data_vars.values():
        assert var.dims == case.da.dims
    assert_same_coords(ds, case.da, case.da.dims)
    _assert_finite(ds)
    assert (ds["variance"] >= 0).all() and (ds["lower"] <= ds["upper"]).all()
    assert _on_data_scale(ds["mean"], case.da)  # scale-aware fit, huge values included


@settings(max_examples=100)
@given(case=task_arrays(list(DEFECTS)), config=st.sampled_from(MULTITASK_CONFIGS))
def test_multitask_gp_bad_inputs(case, config):
    _check_raises(case, lambda: wb.MultitaskGP(**config).fit(case.da, steps=1, progress=False))


@st.composite
def at_arguments(draw, time: np.ndarray):
    """``at=`` values: new coordinates of the data's kind, or a defect."""
    defect = draw(st.sampled_from([None, None, "wrong_kind", "empty", "two_d"]))
    n = draw(st.integers(1, 5))
    fractions = np.sort(np.asarray(draw(st.lists(st.floats(-0.5, 1.5), min_size=n, max_size=n))))
    if time.dtype.kind == "M":
        span = (time[-1] - time[0]).astype(np.int64)
        at = time[0] + (fractions * span).astype(np.int64).astype("timedelta64[ns]")
    else:
        at = time[0] + fractions * (time[-1] - time[0])
    if defect == "wrong_kind":
        dates = np.datetime64("2000-01-01", "ns") + np.arange(n).astype("timedelta64[D]")
        at = np.arange(n, dtype=float) if time.dtype.kind == "M" else dates
    elif defect == "empty":
        at = at[:0]
    elif defect == "two_d":
        at = np.stack([at, at])
    return at, defect


AT_ERRORS = {"wrong_kind": DTypeError, "empty": EmptyDataError, "two_d": ShapeMismatchError}


@pytest.fixture(scope="module", params=["float", "datetime"])
def fitted_multitask(request):
    rng = np.random.default_rng(1)
    T = 7
    time = np.cumsum(rng.uniform(0.5, 2.0, T))
    if request.param == "datetime":
        time = np.datetime64("2020-01-01", "ns") + (time * 86400e9).astype("timedelta64[ns]")
    values = np.sin(np.arange(T))[None] + 0.1 * rng.normal(size=(3, T))
    values[1, 2:5] = np.nan
    da = xr.DataArray(values, dims=("task", "time"), coords={"task": list("abc"), "time": time})
    return da, wb.MultitaskGP().fit(da, steps=2, progress=False)


@settings(max_examples=25)
@given(data=st.data())
def test_multitask_gp_posterior_at(fitted_multitask, data):
    da, model = fitted_multitask
    at, defect = data.draw(at_arguments(da["time"].values))
    if defect is not None:
        with pytest.raises(AT_ERRORS[defect], match="'time'"):
            model.posterior(da, at=at)
        return
    ds = model.posterior(da, at=at)
    assert ds["mean"].dims == ("task", "time")
    np.testing.assert_array_equal(ds["time"].values, at)
    np.testing.assert_array_equal(ds["task"].values, da["task"].values)
    _assert_finite(ds)


# -- Magma and MagmaClust ------------------------------------------------------------------------
def _magma(n_clusters: int, hypothesis: str, prior_mean) -> wb.MagmaClust:
    options = {"hypothesis": hypothesis, "prior_mean": prior_mean, "max_iter": 2, "m_steps": 2}
    return wb.Magma(**options) if n_clusters == 1 else wb.MagmaClust(n_clusters, **options)


def _new_task(da: xr.DataArray) -> xr.DataArray:
    """The first task, as a new task (1-D along time)."""
    return da.isel(task=0, drop=True)


def _check_magma_outputs(case: Case, model: wb.MagmaClust, n_clusters: int) -> None:
    tau = model.memberships()
    assert tau.dims == ("task", "cluster") and tau.sizes["cluster"] == n_clusters
    assert_same_coords(tau, case.da, ["task"])
    assert np.isfinite(tau.values).all()
    np.testing.assert_allclose(tau.sum("cluster").values, 1.0, rtol=1e-9)
    new = _new_task(case.da).astype(np.float64)  # float32 new tasks: see the predict test
    at = new["time"].values[::2] if "time" in new.coords else None
    pred = model.predict(new, at=at)
    _assert_finite(pred)
    expected_time = at if at is not None else np.arange(new.sizes["time"])
    np.testing.assert_array_equal(pred["time"].values, expected_time)
    assert pred["mean"].dims == ("time",) and pred["cluster_mean"].dims == ("cluster", "time")
    np.testing.assert_allclose(float(pred["membership"].sum()), 1.0, rtol=1e-9)
    assert (pred["lower"] <= pred["upper"]).all()
    assert _on_data_scale(pred["mean"], case.da)


MAGMA_OPTIONS = {
    "n_clusters": st.sampled_from([1, 2]),
    "hypothesis": st.sampled_from(["H00", "Hk0", "H0i", "Hki"]),
    "prior_mean": st.sampled_from([0.0, "constant"]),
}


@settings(max_examples=80)
@given(case=task_arrays([None], min_tasks=2), **MAGMA_OPTIONS)
@example(  # regression: constant values -> zero outputscale start, raw noise NaN, LinAlgError
    case=Case(xr.DataArray(np.ones((3, 6)), dims=("task", "time"))),
    n_clusters=2,
    hypothesis="H00",
    prior_mean=0.0,
)
@example(  # regression: tiny values (1e-12) -> noise start below its floor, raw noise NaN
    case=Case(xr.DataArray(1e-12 * np.arange(12.0).reshape(3, 4) ** 2, dims=("task", "time"))),
    n_clusters=1,
    hypothesis="H00",
    prior_mean=0.0,
)
@example(  # regression: float32 data warned again at every memberships()/predict() call
    case=Case(xr.DataArray(np.eye(3, 5, dtype=np.float32), dims=("task", "time")), float32=True),
    n_clusters=2,
    hypothesis="Hki",
    prior_mean="constant",
)
def test_magma_valid_inputs(case, n_clusters, hypothesis, prior_mean):
    model = _magma(n_clusters, hypothesis, prior_mean)
    with warnings.catch_warnings():
        # sklearn's k-means may warn on identical curves; the edge's warnings are checked
        warnings.filterwarnings("ignore", module="sklearn")
        warnings.filterwarnings("ignore", "cluster\\(s\\) .* ended with no members")
        run_benign(case, lambda: model.fit(case.da, progress=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error", WorkbenchWarning)  # the fit's data was validated once
        _check_magma_outputs(case, model, n_clusters)


@settings(max_examples=100)
@given(case=task_arrays(list(DEFECTS), min_tasks=2), **MAGMA_OPTIONS)
@example(  # regression: no tasks -> every time dropped as unobserved, error named 'time'
    case=Case(xr.DataArray(np.zeros((0, 3)), dims=("task", "time")), "empty_task"),
    n_clusters=1,
    hypothesis="H00",
    prior_mean=0.0,
)
def test_magma_bad_inputs(case, n_clusters, hypothesis, prior_mean):
    model = _magma(n_clusters, hypothesis, prior_mean)
    _check_raises(case, lambda: model.fit(case.da, progress=False))


@st.composite
def new_tasks(draw, time: np.ndarray):
    """A new task for ``predict``: benign (NaN gaps, float32) or with one defect."""
    defect = draw(st.sampled_from([None, None, "all_nan", "extra_dim", "inf", "string"]))
    n = len(time)
    values = np.asarray(draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n)))
    hide = np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    hide[draw(st.integers(0, n - 1))] = False
    values[hide] = np.nan
    new = xr.DataArray(values, dims="time", coords={"time": time}, name="new")
    if draw(st.booleans()):
        new = new.astype(np.float32)
    if defect == "all_nan":
        new = new.copy(data=np.full(n, np.nan))
    elif defect == "extra_dim":
        new = new.expand_dims(task=["x", "y"])
    elif defect == "inf":
        new = new.copy(data=np.where(hide, np.nan, np.inf))
    elif defect == "string":
        new = new.astype(str)
    return new, defect


NEW_ERRORS = {
    "all_nan": (EmptyDataError, "'time'"),
    "extra_dim": (DimensionError, "'task'"),
    "inf": (ValueRangeError, "'new'"),
    "string": (DTypeError, "'new'"),
}


@pytest.fixture(scope="module", params=[1, 2])
def fitted_magma(request):
    rng = np.random.default_rng(2)
    time = np.cumsum(rng.uniform(0.5, 2.0, 6))
    values = np.sin(time)[None] + np.arange(4)[:, None] + 0.1 * rng.normal(size=(4, 6))
    values[2, :3] = np.nan
    da = xr.DataArray(values, dims=("task", "time"), coords={"task": list("abcd"), "time": time})
    model = _magma(request.param, "H00", 0.0).fit(da, progress=False)
    return time, model


@settings(max_examples=30)
@given(data=st.data())
@pytest.mark.filterwarnings("ignore::workbench.errors.WorkbenchWarning")  # float32 new tasks
def test_magma_predict_new_task_edge(fitted_magma, data):
    time, model = fitted_magma
    new, defect = data.draw(new_tasks(time))
    at, at_defect = data.draw(at_arguments(time))
    if defect is not None:
        error, needle = NEW_ERRORS[defect]
        with pytest.raises(error, match=needle):
            model.predict(new, at=at)
        return
    if at_defect is not None:
        with pytest.raises(AT_ERRORS[at_defect], match="'time'"):
            model.predict(new, at=at)
        return
    pred = model.predict(new, at=at)
    np.testing.assert_array_equal(pred["time"].values, at)
    _assert_finite(pred)


def test_too_few_tasks_for_the_clusters_is_a_shape_mismatch():
    """Regression: a single task and K = 2 raised a bare ValueError."""
    da = xr.DataArray(np.arange(5.0)[None], dims=("task", "time"))
    with pytest.raises(ShapeMismatchError, match="n_clusters <= the 1 tasks along dim 'task'"):
        wb.MagmaClust(2, max_iter=1).fit(da, progress=False)


def test_magma_fit_on_a_numpy_array_is_a_dtype_error():
    """Regression: ``Magma.fit(ndarray)`` raised AttributeError (``.dims``) before the edge."""
    with pytest.raises(DTypeError, match="expected an xarray"):
        wb.Magma(max_iter=1).fit(np.zeros((2, 3)), progress=False)


def test_timedelta_values_are_rejected():
    """Regression: timedelta64 values were read as integers in their unit (s, ns, ...)."""
    da = xr.DataArray(np.arange(6).reshape(2, 3).astype("timedelta64[s]"), dims=("task", "time"))
    with pytest.raises(DTypeError, match="timedelta64"):
        wb.MultitaskGP().fit(da, steps=1, progress=False)
