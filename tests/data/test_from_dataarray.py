"""The input edge: every bad-input check of ``from_dataarray`` and its conversions."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from workbench.data import TimeAxis, from_dataarray
from workbench.errors import (
    CoordinateError,
    DimensionError,
    DTypeError,
    EmptyDataError,
    ValueRangeError,
    WorkbenchError,
    WorkbenchWarning,
)


def series(values, *, name="y", coord=None, dim="time", **kwargs) -> xr.DataArray:
    """A 1-D DataArray along ``dim`` with coordinate ``coord`` (default 0..T-1)."""
    values = np.asarray(values)
    if coord is None:
        coord = np.arange(values.shape[0], dtype=np.float64)
    return xr.DataArray(values, dims=dim, coords={dim: coord}, name=name, **kwargs)


def days(*stamps: str) -> np.ndarray:
    return np.array(stamps, dtype="datetime64[ns]")


# -- bad input: type, dims, emptiness ------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [np.arange(3.0), [1.0, 2.0], xr.Dataset({"y": ("time", [1.0, 2.0])})],
    ids=["ndarray", "list", "Dataset"],
)
def test_not_a_dataarray_raises_dtype_error(bad):
    with pytest.raises(DTypeError, match=r"expected an xarray\.DataArray, got"):
        from_dataarray(bad)


def test_errors_are_builtin_subclasses():
    # `except ValueError` / `except TypeError` keep working
    with pytest.raises(TypeError):
        from_dataarray(np.arange(3.0))
    with pytest.raises(ValueError):
        from_dataarray(series([1.0, 2.0]), dim="date")


def test_missing_dim_names_the_dim():
    da = series([1.0, 2.0, 3.0], name="temp")
    with pytest.raises(DimensionError, match=r"expected dim 'date' in variable 'temp'.*'time'"):
        from_dataarray(da, dim="date")


def test_zero_length_dim_names_the_dim():
    da = series(np.zeros(0), name="temp")
    with pytest.raises(EmptyDataError, match=r"along dim 'time' of variable 'temp', got 0"):
        from_dataarray(da)


# -- bad input: dtypes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [np.array(["a", "b", "c"]), np.array([1, "x", None], dtype=object), np.ones(3) * 1j],
    ids=["str", "object", "complex"],
)
def test_non_numeric_values_name_the_variable(values):
    da = series(values, name="station_name")
    with pytest.raises(DTypeError, match=r"expected numeric values in variable 'station_name'"):
        from_dataarray(da)


def test_non_numeric_values_of_unnamed_array():
    da = series(np.array(["a", "b"]), name=None)
    with pytest.raises(DTypeError, match=r"in the DataArray, got dtype <U1"):
        from_dataarray(da)


def test_datetime_values_are_not_numeric():
    da = series(days("2000-01-01", "2000-01-02"), name="when")
    with pytest.raises(DTypeError, match=r"variable 'when'"):
        from_dataarray(da)


def test_string_coordinate_names_the_dim():
    da = series([1.0, 2.0, 3.0], coord=["a", "b", "c"])
    with pytest.raises(DTypeError, match=r"coordinate for dim 'time', got dtype <U1"):
        from_dataarray(da)


# -- bad input: coordinates ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_numeric_coordinate_names_the_dim(bad):
    da = series([1.0, 2.0, 3.0], coord=[0.0, bad, 2.0])
    with pytest.raises(CoordinateError, match=r"finite coordinate values for dim 'time'.*1 non"):
        from_dataarray(da)


@pytest.mark.parametrize("ordered", [True, False])
def test_non_finite_coordinate_raises_even_when_unordered(ordered):
    da = series([1.0, 2.0], coord=[0.0, np.nan])
    with pytest.raises(CoordinateError, match=r"'time'"):
        from_dataarray(da, ordered=ordered)


def test_nat_datetime_coordinate_names_the_dim():
    coord = np.array(["2000-01-01", "NaT", "2000-01-03"], dtype="datetime64[ns]")
    da = series([1.0, 2.0, 3.0], coord=coord)
    with pytest.raises(CoordinateError, match=r"finite datetimes in coordinate 'time', got NaT"):
        from_dataarray(da)


def test_nat_datetime_coordinate_with_given_axis():
    axis = TimeAxis.infer(days("2000-01-01"), dim="time")
    da = series([1.0, 2.0], coord=np.array(["2000-01-02", "NaT"], dtype="datetime64[ns]"))
    with pytest.raises(CoordinateError, match=r"finite datetimes in 'time', got NaT"):
        from_dataarray(da, axis=axis)


def test_unsorted_coordinate_names_the_dim():
    da = series([1.0, 2.0, 3.0], coord=[0.0, 2.0, 1.0])
    with pytest.raises(
        CoordinateError,
        match=r"increasing coordinates along dim 'time', got a decrease at position 2",
    ):
        from_dataarray(da)


def test_unsorted_datetime_coordinate_names_the_dim():
    da = series([1.0, 2.0], coord=days("2000-01-02", "2000-01-01"), dim="date")
    with pytest.raises(CoordinateError, match=re.escape("da.sortby('date')")):
        from_dataarray(da, dim="date")


def test_duplicate_coordinate_names_the_dim():
    da = series([1.0, 2.0, 3.0], coord=[0.0, 1.0, 1.0])
    with pytest.raises(
        CoordinateError, match=r"unique coordinates along dim 'time', got a duplicate at position 2"
    ):
        from_dataarray(da)


def test_duplicate_datetime_coordinate():
    da = series([1.0, 2.0], coord=days("2000-01-01", "2000-01-01"))
    with pytest.raises(CoordinateError, match=r"unique coordinates along dim 'time'"):
        from_dataarray(da)


# -- bad input: values ---------------------------------------------------------------------------


def test_all_nan_series_names_the_dim():
    da = series([np.nan, np.nan, np.nan], name="temp")
    with pytest.raises(
        EmptyDataError,
        match=r"observed \(non-NaN\) value along dim 'time' in variable 'temp', got all NaN",
    ):
        from_dataarray(da)


def test_one_all_nan_series_in_a_batch_names_dim_and_batch_coordinate():
    values = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan], [np.nan, 2.0, np.nan]])
    da = xr.DataArray(
        values,
        dims=("unit", "time"),
        coords={"unit": ["a", "b", "c"], "time": [0.0, 1.0, 2.0]},
        name="temp",
    )
    with pytest.raises(
        EmptyDataError, match=r"along dim 'time' in variable 'temp' at \{'unit': 'b'\}.*\(1 such"
    ):
        from_dataarray(da)


def test_all_nan_series_in_batch_without_coordinate_uses_the_position():
    values = np.array([[np.nan, np.nan], [1.0, 2.0]]).T  # dims (time, unit): unit 0 is all NaN
    da = xr.DataArray(values, dims=("time", "unit"), coords={"time": [0.0, 1.0]})
    with pytest.raises(EmptyDataError, match=r"'time' in the DataArray at \{'unit': 0\}"):
        from_dataarray(da)


def test_all_nan_series_in_batch_with_datetime_coordinate_shows_the_date():
    values = np.array([[1.0, 2.0], [np.nan, np.nan]])
    da = xr.DataArray(
        values,
        dims=("run", "time"),
        coords={"run": days("2020-01-01", "2020-02-01"), "time": [0.0, 1.0]},
    )
    with pytest.raises(EmptyDataError, match=r"at \{'run': '2020-02-01T00:00:00\.000000000'\}"):
        from_dataarray(da)


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_values_raise(bad):
    da = series([1.0, bad, np.nan], name="temp")
    with pytest.raises(
        ValueRangeError, match=r"finite values or NaN in variable 'temp', got 1 inf"
    ):
        from_dataarray(da)


def test_negative_counts_raise():
    da = series([0.0, 3.0, -1.0, np.nan], name="cases")
    with pytest.raises(
        ValueRangeError,
        match=r"integer counts in variable 'cases'.*got 1 value\(s\) outside, e.g. -1\.0$",
    ):
        from_dataarray(da, support="count")


def test_non_integer_counts_raise():
    da = series([0.0, 1.5, 2.0], name="cases")
    with pytest.raises(ValueRangeError, match=r"integer counts in variable 'cases'.*1\.5"):
        from_dataarray(da, support="count")


def test_valid_counts_with_nan_accepted():
    obs = from_dataarray(series([0.0, np.nan, 7.0], name="cases"), support="count")
    assert obs.y.tolist() == [0.0, 0.0, 7.0]
    obs = from_dataarray(series(np.array([0, 2, 5], dtype=np.int64)), support="count")
    assert obs.y.tolist() == [0.0, 2.0, 5.0]


def test_binary_support():
    obs = from_dataarray(series([0.0, 1.0, np.nan, 1.0]), support="binary")
    assert obs.mask.tolist() == [True, True, False, True]
    obs = from_dataarray(series(np.array([True, False])), support="binary")
    assert obs.y.tolist() == [1.0, 0.0]
    with pytest.raises(ValueRangeError, match=r"binary values \(0 or 1\) in variable 'hit'.*2"):
        from_dataarray(series([0.0, 1.0, 0.5, 2.0], name="hit"), support="binary")


def test_positive_support():
    obs = from_dataarray(series([0.1, np.nan, 3.0]), support="positive")
    assert obs.y.tolist() == [0.1, 0.0, 3.0]
    with pytest.raises(ValueRangeError, match=r"positive values in variable 'rain'.*2 value"):
        from_dataarray(series([1.0, 0.0, -2.0], name="rain"), support="positive")


def test_real_support_accepts_any_finite_value():
    obs = from_dataarray(series([-1e300, 0.0, 1e300]))
    assert obs.y.tolist() == [-1e300, 0.0, 1e300]


def test_invalid_support_string():
    with pytest.raises(ValueError, match=r"expected support in .*'count'.*got 'integer'"):
        from_dataarray(series([1.0]), support="integer")


def test_unknown_time_unit_names_unit_and_dim():
    da = series([1.0, 2.0], coord=days("2000-01-01", "2000-01-02"))
    with pytest.raises(CoordinateError, match=r"time_unit in .*got 'days' for dim 'time'"):
        from_dataarray(da, time_unit="days")
    with pytest.raises(WorkbenchError):
        from_dataarray(da, time_unit="M")  # calendar months are ambiguous and not supported


def test_axis_of_wrong_kind_raises():
    numeric = TimeAxis(kind="numeric")
    da = series([1.0, 2.0], coord=days("2000-01-01", "2000-01-02"))
    with pytest.raises(DTypeError, match=r"expected numeric coordinates for dim 'time'"):
        from_dataarray(da, axis=numeric)


# -- conversions ---------------------------------------------------------------------------------


def test_nan_becomes_mask_with_y_zeroed():
    obs = from_dataarray(series([1.5, np.nan, -3.0, np.nan]))
    assert obs.mask.dtype == torch.bool
    assert obs.mask.tolist() == [True, False, True, False]
    assert obs.y.tolist() == [1.5, 0.0, -3.0, 0.0]
    assert obs.n_observed == 2
    x, y = obs.observed()
    assert x.tolist() == [0.0, 2.0]
    assert y.tolist() == [1.5, -3.0]


def test_output_is_float64():
    obs = from_dataarray(series([1.0, 2.0], coord=np.array([0, 5], dtype=np.int32)))
    assert obs.x.dtype == torch.float64
    assert obs.y.dtype == torch.float64
    assert obs.x.tolist() == [0.0, 5.0]


def test_float32_input_warns_and_converts():
    values = np.array([0.1, np.nan, 0.3], dtype=np.float32)
    with pytest.warns(WorkbenchWarning, match=r"variable 'y' is float32; converting to float64"):
        obs = from_dataarray(series(values))
    assert obs.y.dtype == torch.float64
    np.testing.assert_array_equal(obs.y.numpy(), [np.float64(values[0]), 0.0, values[2]])
    assert obs.mask.tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([3, -1, 0], dtype=np.int64), [3.0, -1.0, 0.0]),
        (np.array([7, 1, 0], dtype=np.uint8), [7.0, 1.0, 0.0]),
        (np.array([True, False, True]), [1.0, 0.0, 1.0]),
    ],
    ids=["int64", "uint8", "bool"],
)
def test_int_and_bool_input_accepted_without_warning(values, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obs = from_dataarray(series(values))
    assert obs.y.dtype == torch.float64
    assert obs.y.tolist() == expected
    assert obs.mask.all()


def test_batch_dims_moved_to_front_in_order():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 2, 3))
    da = xr.DataArray(
        values,
        dims=("time", "unit", "site"),
        coords={"time": [0.0, 1.0, 2.0, 3.0], "unit": ["a", "b"]},
    )
    obs = from_dataarray(da)
    assert obs.dim == "time"
    assert obs.batch_dims == ("unit", "site")
    assert obs.y.shape == (2, 3, 4)
    assert obs.batch_shape == (2, 3)
    np.testing.assert_array_equal(obs.y.numpy(), values.transpose(1, 2, 0))
    # the template keeps the input's own dim order for labelling outputs
    assert obs.template.dims == ("time", "unit", "site")


def test_time_unit_batch_gives_unit_time_shape():
    values = np.arange(6.0).reshape(3, 2)
    da = xr.DataArray(values, dims=("time", "unit"), coords={"unit": ["a", "b"]})
    obs = from_dataarray(da)
    assert obs.batch_dims == ("unit",)
    assert obs.y.shape == (2, 3)
    assert obs.y.tolist() == [[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]]


def test_dim_without_coordinate_uses_positions():
    da = xr.DataArray([5.0, 6.0, 7.0, 8.0], dims="step")
    obs = from_dataarray(da, dim="step")
    assert obs.x.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert obs.axis == TimeAxis(kind="numeric")


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("D", [0.0, 1.0, 60.0, 366.0, 1461.0]),
        ("h", [0.0, 24.0, 1440.0, 8784.0, 35064.0]),
        ("Y", [0.0, 1.0 / 365.25, 60.0 / 365.25, 366.0 / 365.25, 4.0]),
        ("W", [0.0, 1.0 / 7.0, 60.0 / 7.0, 366.0 / 7.0, 1461.0 / 7.0]),
    ],
)
def test_datetime_coordinate_maps_to_float_axis_exactly(unit, expected):
    coord = days("2000-01-01", "2000-01-02", "2000-03-01", "2001-01-01", "2004-01-01")
    obs = from_dataarray(series(np.arange(5.0), coord=coord), time_unit=unit)
    assert obs.x.tolist() == expected  # exact, not approximately
    assert obs.axis.kind == "datetime"
    assert obs.axis.unit == unit
    assert obs.axis.origin == "2000-01-01T00:00:00.000000000"
    np.testing.assert_array_equal(obs.coords_of(obs.x), coord)


def test_datetime_coordinate_sub_day():
    coord = np.array(["2000-01-01T00:00", "2000-01-01T06:00", "2000-01-01T06:30"], "datetime64[ns]")
    obs = from_dataarray(series([1.0, 2.0, 3.0], coord=coord), time_unit="h")
    assert obs.x.tolist() == [0.0, 6.0, 6.5]
    obs = from_dataarray(series([1.0, 2.0, 3.0], coord=coord))  # default unit is days
    assert obs.x.tolist() == [0.0, 0.25, 0.2708333333333333]


def test_unordered_allows_unsorted_and_duplicate_coordinates():
    obs = from_dataarray(series([1.0, 2.0, 3.0], coord=[2.0, 0.0, 1.0]), ordered=False)
    assert obs.x.tolist() == [2.0, 0.0, 1.0]
    assert obs.y.tolist() == [1.0, 2.0, 3.0]
    obs = from_dataarray(series([1.0, 2.0], coord=[1.0, 1.0]), ordered=False)
    assert obs.x.tolist() == [1.0, 1.0]


def test_unordered_datetimes_use_earliest_as_origin():
    coord = days("2000-01-03", "2000-01-01", "2000-01-02")
    obs = from_dataarray(series([1.0, 2.0, 3.0], coord=coord), ordered=False)
    assert obs.axis.origin == "2000-01-01T00:00:00.000000000"
    assert obs.x.tolist() == [2.0, 0.0, 1.0]


def test_axis_reuses_existing_origin():
    first = from_dataarray(series([1.0, 2.0], coord=days("2000-01-01", "2000-01-02")))
    later = series([3.0, 4.0], coord=days("2000-01-05", "2000-01-06T12:00"))
    obs = from_dataarray(later, axis=first.axis, time_unit="h")  # time_unit ignored with axis
    assert obs.axis == first.axis
    assert obs.x.tolist() == [4.0, 5.5]
    # without the axis the origin is the new data's first time
    assert from_dataarray(later).x.tolist() == [0.0, 1.5]


def test_observations_keep_name_attrs_and_template():
    da = series(
        [1.0, np.nan], name="temp", attrs={"units": "K", "long_name": "Temperature"}
    ).assign_coords(doy=("time", [1, 2]))
    obs = from_dataarray(da)
    assert obs.name == "temp"
    assert obs.attrs == {"units": "K", "long_name": "Temperature"}
    assert obs.template.dtype == np.bool_
    assert "doy" in obs.template.coords
    # the input itself is left alone
    assert np.isnan(da.values[1])


# -- property: NaN pattern -> mask ---------------------------------------------------------------


@st.composite
def nan_patterned(draw):
    shape = draw(st.tuples(st.integers(1, 3), st.integers(1, 12)))
    values = draw(
        hnp.arrays(
            np.float64,
            shape,
            elements=st.floats(allow_nan=False, allow_infinity=False, width=64),
        )
    )
    observed = draw(hnp.arrays(np.bool_, shape))
    first = draw(hnp.arrays(np.int64, shape[:1], elements=st.integers(0, shape[1] - 1)))
    observed[np.arange(shape[0]), first] = True  # at least one observed value per series
    return np.where(observed, values, np.nan)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(values=nan_patterned())
def test_mask_is_not_nan_and_observed_values_exact(values):
    da = xr.DataArray(values, dims=("unit", "time"))
    obs = from_dataarray(da)
    mask = obs.mask.numpy()
    y = obs.y.numpy()
    np.testing.assert_array_equal(mask, ~np.isnan(values))
    np.testing.assert_array_equal(y[mask], values[mask])
    assert (y[~mask] == 0.0).all()
    assert y.dtype == np.float64


def test_empty_batch_dim_names_the_dim():
    da = xr.DataArray(np.zeros((0, 3)), dims=("unit", "time"), coords={"time": [0.0, 1.0, 2.0]})
    with pytest.raises(EmptyDataError, match="'unit'"):
        from_dataarray(da)


def test_timedelta_coordinate_is_rejected_not_read_as_integers():
    da = xr.DataArray(
        [1.0, 2.0], dims="time", coords={"time": np.array([0, 1], dtype="timedelta64[s]")}
    )
    with pytest.raises(DTypeError, match="'time'"):
        from_dataarray(da)


def test_unknown_time_unit_is_rejected_for_numeric_coordinates_too():
    with pytest.raises(CoordinateError, match="time_unit"):
        from_dataarray(series([1.0, 2.0]), time_unit="days")
