"""Property-based tests at the xarray edge of SparseInverseCholeskyGP.

Generated inputs are grids (2 or 3 dims in random order, float/integer/irregular/unsorted or
duplicated coordinates, or none) and scattered points (a "site" dim with input coordinates),
with NaN patterns, magnitudes from 1e-12 to 1e12, float32 and integer values, and ``at=``
arguments of every accepted kind. The property: the call returns a Dataset labelled like its
source (the data, or ``at``) with every value finite, or raises a
:class:`workbench.errors.WorkbenchError` subclass whose message names the offending input or
variable. Any other exception is a defect.
"""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import xarray as xr
from edge_checks import EdgeCase as Case
from edge_checks import check_error, check_moments, named, run, run_case, set_one_observed
from hypothesis import example, given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.errors import (
    CoordinateError,
    DimensionError,
    DTypeError,
    EmptyDataError,
    ShapeMismatchError,
    ValueRangeError,
)

MAGNITUDES = (1e-12, 1e-6, 1.0, 1e6, 1e12)
GRID_DIMS = ("x", "y", "z")
POINT_INPUTS = ("lon", "lat", "depth")


def make_model(
    likelihood: str = "gaussian", inputs: list[str] | None = None
) -> wb.SparseInverseCholeskyGP:
    return wb.SparseInverseCholeskyGP(likelihood=likelihood, n_neighbors=4, inputs=inputs)


def fit(model: wb.SparseInverseCholeskyGP, da: xr.DataArray) -> wb.SparseInverseCholeskyGP:
    return model.fit(da, epochs=1, batch_size=8, progress=False)


# -- strategies ----------------------------------------------------------------------------------
@st.composite
def axis_coords(draw: st.DrawFn, n: int) -> np.ndarray | None:
    """Coordinates of one grid dim; order and duplicates do not matter to this model."""
    kind = draw(st.sampled_from(["regular", "irregular", "integer", "unsorted", "none"]))
    if kind == "none":
        return None
    if kind == "integer":
        return np.arange(n, dtype=np.int64) * draw(st.integers(1, 100))
    scale = draw(st.sampled_from([1e-9, 1.0, 1e9]))
    if kind == "regular":
        return scale * np.arange(n, dtype=np.float64)
    x = draw(hnp.arrays(np.float64, n, elements=st.floats(-1e3, 1e3)))
    return scale * (np.sort(x) if kind == "irregular" else x)


def _values(draw: st.DrawFn, shape: tuple[int, ...], support: str) -> np.ndarray:
    if support == "count":
        return draw(hnp.arrays(np.float64, shape, elements=st.integers(0, 30).map(float)))
    unit = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1, width=32)))
    return draw(st.sampled_from(MAGNITUDES)) * (unit + draw(st.sampled_from([0.0, 3.0])))


def _missing(draw: st.DrawFn, values: np.ndarray, pattern: str) -> np.ndarray:
    """NaN where ``pattern`` says: none, random (one kept), all but one, or all."""
    keep = np.zeros(values.shape, dtype=bool)
    keep.flat[draw(st.integers(0, values.size - 1))] = True
    if pattern == "none":
        keep[:] = True
    elif pattern == "random":
        keep |= draw(hnp.arrays(np.bool_, values.shape))
    elif pattern == "all":
        keep[:] = False
    return np.where(keep, values, np.nan)


def _dtype(draw: st.DrawFn, values: np.ndarray) -> np.ndarray:
    choices = ["float64", "float32"] + (["int64"] if np.isfinite(values).all() else [])
    dtype = draw(st.sampled_from(choices))
    return np.rint(values).astype(dtype) if dtype == "int64" else values.astype(dtype)


@st.composite
def grids(draw: st.DrawFn, *, support: str = "real", patterns: tuple[str, ...] = ()) -> Case:
    """A 2-D or 3-D grid with dims in random order; "slice" leaves a whole slice NaN."""
    dims = tuple(draw(st.permutations(GRID_DIMS))[: draw(st.integers(2, 3))])
    shape = tuple(draw(st.integers(1, 4)) for _ in dims)
    pattern = draw(st.sampled_from(patterns or ("none", "random", "all_but_one", "slice", "all")))
    values = _missing(
        draw, _values(draw, shape, support), "random" if pattern == "slice" else pattern
    )
    if pattern == "slice":  # every cell at one index of one dim missing
        axis = draw(st.integers(0, len(dims) - 1))
        index = [slice(None)] * len(dims)
        index[axis] = draw(st.integers(0, shape[axis] - 1))
        values[tuple(index)] = np.nan
    values = _dtype(draw, values)
    coords = {
        d: c for d, n in zip(dims, shape, strict=True) if (c := draw(axis_coords(n))) is not None
    }
    name = draw(st.sampled_from([None, "z"]))
    da = xr.DataArray(values, dims=dims, coords=coords, name=name, attrs={"units": "K"})
    if not np.isfinite(da.values.astype(np.float64)).any():
        return Case(da, EmptyDataError, (named(da),))
    return Case(da, None, ())


@st.composite
def points(draw: st.DrawFn, *, support: str = "real", patterns: tuple[str, ...] = ()) -> Case:
    """Scattered points along "site" with 1 to 3 input coordinates (duplicates allowed)."""
    n = draw(st.integers(1, 12))
    names = POINT_INPUTS[: draw(st.integers(1, 3))]
    scale = draw(st.sampled_from([1e-9, 1.0, 1e9]))
    X = scale * draw(hnp.arrays(np.float64, (n, len(names)), elements=st.floats(-10, 10)))
    pattern = draw(st.sampled_from(patterns or ("none", "random", "all_but_one", "all")))
    values = _dtype(draw, _missing(draw, _values(draw, (n,), support), pattern))
    coords = {c: ("site", X[:, i]) for i, c in enumerate(names)}
    name = draw(st.sampled_from([None, "z"]))
    da = xr.DataArray(values, dims="site", coords=coords, name=name, attrs={"units": "K"})
    if not np.isfinite(da.values.astype(np.float64)).any():
        return Case(da, EmptyDataError, (named(da),))
    return Case(da, None, ())


# -- checks --------------------------------------------------------------------------------------
def check_labelled(ds: xr.Dataset, source: xr.DataArray, units: str | None = "K") -> None:
    """The source's dims (same order) and coordinates, finite moments, ordered bounds."""
    check_moments(ds, source.dims, units, source.shape)
    for name, coord in source.coords.items():
        np.testing.assert_array_equal(ds[name].values, coord.values)
    assert set(ds.coords) == set(source.coords)


# -- properties ----------------------------------------------------------------------------------
@settings(max_examples=150)
@given(case=st.one_of(grids(), points()))
@example(  # an infinite value was dropped as if missing on grids and crashed on points
    case=Case(
        xr.DataArray([1.0, np.inf, 2.0], dims="site", coords={"lon": ("site", [0.0, 1, 2])}),
        ValueRangeError,
        ("DataArray", "infinite"),
    )
)
@example(  # complex values were cast to real with a numpy ComplexWarning
    case=Case(
        xr.DataArray(np.ones((2, 2), complex), dims=("x", "y"), name="z"), DTypeError, ("'z'",)
    )
)
@example(  # near-duplicate inputs: lengthscale 10 x spacing = 1e-58 became 0 (ValueError)
    case=Case(
        xr.DataArray(np.zeros(3), dims="site", coords={"lon": ("site", [1e-9, 1.063e-68, 0.0])}),
        None,
        (),
    )
)
def test_fit_and_posterior_are_labelled_and_finite(case: Case) -> None:
    model = make_model()
    ds = run_case(lambda: fit(model, case.da).posterior(), case)
    if case.expect is None:
        check_labelled(ds, case.da, case.da.attrs.get("units"))


@st.composite
def bad_data(draw: st.DrawFn) -> Case:
    """Valid grid or points data with one defect, and the error it must raise."""
    case = draw(st.one_of(grids(patterns=("none", "random")), points(patterns=("none", "random"))))
    da = case.da.astype(np.float64)
    names = (named(da),)
    kind = draw(st.sampled_from(["empty", "str", "object", "complex", "bool", "timedelta", "inf",
                                 "coord_nonfinite", "coord_datetime", "coord_str"]))  # fmt: skip
    if kind == "empty":
        return Case(da.isel({da.dims[0]: slice(0, 0)}), EmptyDataError, names)
    if kind in ("str", "object", "complex", "bool", "timedelta"):
        if kind == "timedelta":
            return Case(da.fillna(0).astype("timedelta64[s]"), DTypeError, names)
        return Case(da.astype({"str": str, "object": object, "complex": complex,
                               "bool": bool}[kind]), DTypeError, names)  # fmt: skip
    if kind == "inf":
        return Case(set_one_observed(draw, da, -np.inf), ValueRangeError, names)
    name = draw(st.sampled_from([c for c in da.coords if c != "site"] or list(da.dims)))
    n = da[name].size
    if kind == "coord_nonfinite":
        bad = da[name].values.astype(np.float64)
        bad[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf]))
        return Case(da.assign_coords({name: (da[name].dims, bad)}), CoordinateError, (name,))
    bad = np.datetime64("2000-01-01") + np.arange(n) if kind == "coord_datetime" else None
    bad = np.array([f"c{i}" for i in range(n)]) if bad is None else bad
    # points: a non-numeric coordinate is no input by default, so name the inputs
    inputs = [str(c) for c in da.coords] if da.ndim == 1 else None
    return Case(da.assign_coords({name: (da[name].dims, bad)}), DTypeError, (name,), inputs)


@settings(max_examples=120)
@given(case=bad_data())
def test_bad_data_raises_a_named_workbench_error(case: Case) -> None:
    _, err, _ = run(lambda: fit(make_model(inputs=case.inputs), case.da))
    check_error(err, case)


@settings(max_examples=50)
@given(case=points(support="count", patterns=("none", "random", "all_but_one")), data=st.data())
@example(  # negative and fractional counts were accepted by the Poisson likelihood
    case=Case(
        xr.DataArray([-1.0, 2.5], dims="site", coords={"lon": ("site", [0.0, 1.0])}), None, ()
    ),
    data=None,
)
def test_count_likelihoods_check_counts(case: Case, data: st.DataObject | None) -> None:
    da = case.da.astype(np.float64)
    kind = "given" if data is None else data.draw(st.sampled_from(["valid", "negative", "frac"]))
    if kind in ("negative", "frac"):
        da = set_one_observed(data.draw, da, -3.0 if kind == "negative" else 0.5)
    ds, err, _ = run(lambda: fit(make_model("poisson"), da).posterior())
    if kind == "valid":
        assert err is None, f"valid counts raised {err!r}"
        check_labelled(ds, da)
        return
    check_error(err, Case(da, ValueRangeError, (named(da), "count")))


# -- at= -----------------------------------------------------------------------------------------
_FITTED: dict[str, tuple[wb.SparseInverseCholeskyGP, xr.DataArray]] = {}


def fitted(kind: str) -> tuple[wb.SparseInverseCholeskyGP, xr.DataArray]:
    """A model fitted once on a (y, x) grid with a missing cell, or on (lon, lat) points."""
    if kind not in _FITTED:
        rng = np.random.default_rng(0)
        if kind == "grid":
            values = rng.normal(size=(4, 5))
            values[1, 2] = np.nan
            da = xr.DataArray(values, dims=("y", "x"),
                              coords={"y": np.arange(4.0), "x": np.linspace(0, 2, 5)})  # fmt: skip
        else:
            X = rng.uniform(size=(10, 2))
            where = {"lon": ("site", X[:, 0]), "lat": ("site", X[:, 1])}
            da = xr.DataArray(rng.normal(size=10), dims="site", coords=where)
        _FITTED[kind] = fit(make_model(), da), da
    return _FITTED[kind]


AT_KINDS = ("array", "points", "grid", "dataset", "columns", "nonfinite", "empty", "str",
            "grid_other_dims", "points_missing", "ragged")  # fmt: skip


@st.composite
def at_values(draw: st.DrawFn, inputs: tuple[str, str]) -> tuple[Any, Any, Any]:
    """(at, expected error or None, the DataArray labelling the result or None for arrays)."""
    kind = draw(st.sampled_from(AT_KINDS))
    n = draw(st.integers(1, 5))
    X = draw(hnp.arrays(np.float64, (n, 2), elements=st.floats(-1e3, 1e3)))
    where = {c: ("pt", X[:, i]) for i, c in enumerate(inputs)}
    if kind == "array":
        return X, None, None
    if kind in ("points", "dataset"):
        at = xr.DataArray(np.full(n, np.nan), dims="pt", coords=where)
        return (at, None, at) if kind == "points" else (at.to_dataset(name="v"), None, at)
    if kind == "grid":  # the inputs as dims, in a random order, unsorted coordinates
        order = draw(st.permutations(inputs))
        at = xr.DataArray(np.zeros((n, 2)), dims=order,
                          coords={order[0]: X[:, 0], order[1]: [5.0, -5.0]})  # fmt: skip
        return at, None, at
    if kind == "columns":
        return draw(st.sampled_from([X[:, :1], np.hstack([X, X])])), ShapeMismatchError, "`at`"
    if kind == "nonfinite":
        X[draw(st.integers(0, n - 1)), draw(st.integers(0, 1))] = np.nan
        return X, CoordinateError, "`at`"
    if kind == "empty":
        return X[:0], EmptyDataError, "`at`"
    if kind == "str":
        return X.astype(str), DTypeError, "`at`"
    if kind == "grid_other_dims":
        return xr.DataArray(np.zeros((n, 2)), dims=(inputs[0], "w")), DimensionError, inputs[0]
    if kind == "points_missing":
        at = xr.DataArray(np.zeros(n), dims="pt", coords={inputs[0]: ("pt", X[:, 0])})
        return at, DimensionError, inputs[1]
    return [[1.0, 2.0], [3.0]], ShapeMismatchError, "`at`"


@pytest.mark.parametrize("kind", ["grid", "points"])
@settings(max_examples=80)
@given(data=st.data())
def test_at_gives_labelled_predictions_or_a_named_error(kind: str, data: st.DataObject) -> None:
    model, da = fitted(kind)
    at, expect, source = data.draw(at_values(("x", "y") if kind == "grid" else ("lon", "lat")))
    ds, err, _ = run(lambda: model.posterior(at))
    if expect is not None:
        check_error(err, Case(da, expect, (source,)))
        return
    assert err is None, f"valid at= raised {err!r}"
    if source is None:
        assert ds["mean"].dims == ("point",) and ds.sizes["point"] == len(at)
        assert all(np.isfinite(v.values).all() for v in ds.data_vars.values())
        return
    check_labelled(ds, source, units=None)


def test_at_grid_in_another_dim_order_predicts_the_same_cells() -> None:
    """Regression: a gridded ``at`` crashed (flat values under its dims); its inputs must map
    to the model's inputs by name, whatever the dim order."""
    model, da = fitted("grid")
    direct = model.posterior()
    flipped = model.posterior(da.transpose("x", "y"))
    assert flipped["mean"].dims == ("x", "y")
    np.testing.assert_allclose(flipped["mean"].transpose("y", "x"), direct["mean"], rtol=1e-12)
    cells = np.stack(np.meshgrid(da.y, da.x, indexing="ij"), -1).reshape(-1, 2)  # (y, x) rows
    arrays = model.posterior(cells)
    np.testing.assert_allclose(arrays["mean"].values, direct["mean"].values.reshape(-1))
