"""``resolve_at``: turning the ``at=`` argument into new float positions."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import xarray as xr

from workbench.data import from_dataarray, resolve_at
from workbench.errors import CoordinateError, DTypeError, EmptyDataError, ShapeMismatchError


@pytest.fixture
def numeric_obs():
    da = xr.DataArray([1.0, np.nan, 3.0], dims="time", coords={"time": [0.0, 1.0, 2.0]})
    return from_dataarray(da)


@pytest.fixture
def datetime_obs():
    t = np.array(["2000-01-01", "2000-01-02", "2000-01-04"], dtype="datetime64[ns]")
    da = xr.DataArray([1.0, 2.0, 3.0], dims="time", coords={"time": t})
    return from_dataarray(da)


def test_none_returns_the_observed_positions(numeric_obs):
    x, coords = resolve_at(numeric_obs, None)
    assert x is numeric_obs.x
    assert coords is None


@pytest.mark.parametrize(
    "at",
    [
        [0.5, 4.0],
        np.array([0.5, 4.0]),
        np.array([0.5, 4.0], dtype=np.float32),
        torch.tensor([0.5, 4.0]),
    ],
    ids=["list", "ndarray", "float32", "tensor"],
)
def test_one_dimensional_array(numeric_obs, at):
    x, coords = resolve_at(numeric_obs, at)
    assert x.dtype == torch.float64
    assert x.tolist() == [0.5, 4.0]
    np.testing.assert_array_equal(coords, [0.5, 4.0])


def test_dataarray_with_dim_coordinate(numeric_obs):
    at = xr.DataArray(np.zeros(3), dims="time", coords={"time": [-1.0, 0.5, 10.0]})
    x, coords = resolve_at(numeric_obs, at)
    assert x.tolist() == [-1.0, 0.5, 10.0]
    np.testing.assert_array_equal(coords, [-1.0, 0.5, 10.0])


def test_dataset_with_dim_coordinate(numeric_obs):
    at = xr.Dataset(coords={"time": [2.5, 3.5]})
    x, coords = resolve_at(numeric_obs, at)
    assert x.tolist() == [2.5, 3.5]
    np.testing.assert_array_equal(coords, [2.5, 3.5])


def test_dataarray_with_dim_but_no_coordinate_uses_positions(numeric_obs):
    x, _ = resolve_at(numeric_obs, xr.DataArray(np.zeros(4), dims="time"))
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_datetime_at(datetime_obs):
    new = np.array(["2000-01-03T12:00", "2000-01-10"], dtype="datetime64[ns]")
    x, coords = resolve_at(datetime_obs, new)
    assert x.tolist() == [2.5, 9.0]
    np.testing.assert_array_equal(coords, new)
    x, _ = resolve_at(datetime_obs, xr.Dataset(coords={"time": new}))
    assert x.tolist() == [2.5, 9.0]


def test_dataarray_lacking_the_dim_names_the_dim(numeric_obs):
    at = xr.DataArray([0.5, 1.5], dims="date", coords={"date": [0.5, 1.5]})
    with pytest.raises(ShapeMismatchError, match=r"coordinate 'time' like the data.*'date'"):
        resolve_at(numeric_obs, at)


def test_dataset_lacking_the_dim_names_the_dim(numeric_obs):
    with pytest.raises(ShapeMismatchError, match=r"'time'"):
        resolve_at(numeric_obs, xr.Dataset(coords={"step": [1.0]}))


@pytest.mark.parametrize("at", [np.zeros((2, 3)), np.float64(1.0), [[1.0], [2.0]]])
def test_not_one_dimensional_names_the_dim(numeric_obs, at):
    shape = np.shape(at)
    message = re.escape(f"1-D coordinates of dim 'time', got shape {shape}")
    with pytest.raises(ShapeMismatchError, match=message):
        resolve_at(numeric_obs, at)


def test_two_dimensional_coordinate_in_xarray_raises(numeric_obs):
    at = xr.Dataset(coords={"time": (("a", "b"), np.zeros((2, 2)))})
    with pytest.raises(ShapeMismatchError, match=r"dim 'time', got shape \(2, 2\)"):
        resolve_at(numeric_obs, at)


@pytest.mark.parametrize("at", [[], np.zeros(0), xr.Dataset(coords={"time": np.zeros(0)})])
def test_empty_raises(numeric_obs, at):
    with pytest.raises(EmptyDataError, match=r"at least one coordinate in `at` for dim 'time'"):
        resolve_at(numeric_obs, at)


def test_datetimes_where_data_is_numeric(numeric_obs):
    at = np.array(["2000-01-01"], dtype="datetime64[ns]")
    with pytest.raises(DTypeError, match=r"^`at`: expected numeric coordinates for dim 'time'"):
        resolve_at(numeric_obs, at)


@pytest.mark.parametrize("at", [[0.0, 1.0], np.arange(3), ["2000-01-01"]])
def test_numbers_or_strings_where_data_is_datetime(datetime_obs, at):
    with pytest.raises(DTypeError, match=r"^`at`: expected datetime64 coordinates for dim 'time'"):
        resolve_at(datetime_obs, at)


def test_non_finite_at_raises(numeric_obs, datetime_obs):
    with pytest.raises(CoordinateError, match=r"'time'"):
        resolve_at(numeric_obs, [0.0, np.nan])
    with pytest.raises(CoordinateError, match=r"'time'"):
        resolve_at(datetime_obs, np.array(["2000-01-01", "NaT"], dtype="datetime64[ns]"))
